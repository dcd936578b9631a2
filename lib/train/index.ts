/** Training utilities that do not need autograd: learning-rate schedules, progress, metrics log, curves. */
export { warmupCosine, stepDecay, constant, scheduleFromJSON } from './schedule';
export type { LrSchedule, ScheduleJSON, WarmupCosineOptions, StepDecayOptions } from './schedule';
export { ProgressBar, formatProgress, formatDuration } from './progress';
export type { ProgressOptions, ProgressState, ProgressStats, ProgressStream } from './progress';
export { MetricsLog, readMetrics } from './metrics-log';
export type { MetricsRecord } from './metrics-log';
export { plotCurves, curvesSvg } from './plot';
export type { PlotLine, PlotOptions, PlotSeries } from './plot';
