// Temporary: the names that admin/release.ts and test/admin still import from here, until their owners move them.
export { isInStaging } from './attempt-files.js';
export { ensureModulesFile, prepareJob } from './prepare-job.js';
export { readHeldRuns } from '../state/held-runs.js';
