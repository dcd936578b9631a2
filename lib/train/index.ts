/** Training: the Trainer loop, checkpoints, schedules, progress, metrics log and curves. */
export { Trainer } from './trainer';
export type { TrainerOptions, BatchSource, HostBatch, StepInfo, EpochInfo, EvalResult, TrainableModel } from './trainer';
export { saveCheckpoint, loadCheckpoint, hasCheckpoint, readTrainState, checkpointPaths } from './checkpoint';
export type { TrainState, CheckpointParts } from './checkpoint';
export { runTraining } from './run';
export type { TrainRunOptions, TrainRunResult } from './run';
export { warmupCosine, stepDecay, constant, scheduleFromJSON } from './schedule';
export type { LrSchedule, ScheduleJSON, WarmupCosineOptions, StepDecayOptions } from './schedule';
export { ProgressBar, formatProgress, formatDuration } from './progress';
export type { ProgressOptions, ProgressState, ProgressStats, ProgressStream } from './progress';
export { MetricsLog, readMetrics } from './metrics-log';
export type { MetricsRecord } from './metrics-log';
export { plotCurves, curvesSvg } from './plot';
export type { PlotLine, PlotOptions, PlotSeries } from './plot';
