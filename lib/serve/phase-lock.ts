/**
 * Alternates two kinds of CPU work that slow each other down when they
 * overlap: image decoding and model batches. On a CPU device both want every
 * core, and a decode that preempts one thread of a parallel kernel leaves the
 * others waiting at its end, so overlapping them costs several times the
 * decode itself. Work of one kind runs together (decodes in parallel with each
 * other, batches of several models together); when the other kind is waiting,
 * newcomers queue behind it, so neither kind starves.
 */
export type Phase = 'decode' | 'compute';

export class PhaseLock {
  private phase: Phase | null = null;
  private active = 0;
  private waiting: Record<Phase, (() => void)[]> = { decode: [], compute: [] };

  /** Resolves with a release function once `kind` may run. */
  acquire(kind: Phase): Promise<() => void> {
    const other: Phase = kind === 'decode' ? 'compute' : 'decode';
    const otherWaits = this.waiting[other].length > 0;
    if (this.phase === null || (this.phase === kind && !otherWaits)) {
      this.phase = kind;
      this.active += 1;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve) => this.waiting[kind].push(() => resolve(this.releaser())));
  }

  /** Runs fn in phase `kind`. */
  async run<T>(kind: Phase, fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire(kind);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active -= 1;
      if (this.active === 0) this.switchPhase();
    };
  }

  private switchPhase(): void {
    const current = this.phase!;
    const other: Phase = current === 'decode' ? 'compute' : 'decode';
    const next = this.waiting[other].length ? other : this.waiting[current].length ? current : null;
    this.phase = next;
    if (!next) return;
    const admitted = this.waiting[next].splice(0);
    this.active += admitted.length;
    for (const go of admitted) go();
  }
}
