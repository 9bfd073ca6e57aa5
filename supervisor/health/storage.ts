// The node's storage as a health service ("aurae.storage"): NOT_SERVING when state is in RAM although a state
// volume exists or was expected (init's /run/aurae/storage.json says "degraded"), or when the state database
// fails SQLite's integrity check. The server as a whole keeps serving: a degraded node still answers.
import { STORAGE_STATUS_PATH } from '../config/node-paths';
import type { ServingStatus } from './health-registry';

export const STORAGE_HEALTH_SERVICE = 'aurae.storage';

export interface StorageHealth {
  status: ServingStatus;
  /** One line for the log: why, or what is in use. */
  summary: string;
}

/** Pure: init's status file text (or null) and the database integrity check's result lines. */
export function storageHealth(statusText: string | null, integrity: string[]): StorageHealth {
  const problems: string[] = [];
  let where = 'state: not under aurae init (no storage status)';
  if (statusText !== null) {
    try {
      const s = JSON.parse(statusText) as { state?: { device?: string | null; mounted?: boolean; degraded?: string | null; actions?: string[] } };
      if (s.state?.degraded) problems.push(`state volume unusable, state is in RAM: ${s.state.degraded}`);
      else if (s.state?.mounted) where = `state: /dev/${s.state.device} mounted${s.state.actions?.length ? ` (${s.state.actions.join(', ')} this boot)` : ''}`;
      else where = 'state: in RAM (no state volume)';
    } catch {
      problems.push(`${STORAGE_STATUS_PATH} is not valid JSON`);
    }
  }
  if (!(integrity.length === 1 && integrity[0] === 'ok')) problems.push(`state database integrity_check: ${integrity.slice(0, 5).join('; ') || 'no result'}`);
  return problems.length ? { status: 'NOT_SERVING', summary: problems.join('; ') } : { status: 'SERVING', summary: `${where}; database integrity_check ok` };
}
