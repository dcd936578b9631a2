export { loadSafetensors, saveSafetensors, readSafetensorsHeader } from './safetensors';
export type { SafetensorsEntry, SafetensorsHeader } from './safetensors';
