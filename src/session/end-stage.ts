import { nothingLeftToClaim } from '../state/claim.js';
import { planEnd, type EndInput } from './plan.js';
import type { Stage } from './stage.js';

/**
 * Whether the session is done, from the plan and, when the plan cannot tell by itself, from the
 * database (is anything left to claim?). `notDone` is what --until-done still waits for.
 */
export async function whetherDone(stage: Stage, input: EndInput): Promise<{ kind: 'stop'; reason: string } | { kind: 'go-on'; notDone: string | null }> {
  const decision = planEnd(input);
  switch (decision.kind) {
    case 'stop':
      return decision;
    case 'go-on':
      return { kind: 'go-on', notDone: null };
    case 'not-done':
      return { kind: 'go-on', notDone: decision.why };
    case 'stop-if-nothing-left': {
      const { db, production } = stage.job;
      const nothingLeft = await nothingLeftToClaim(db, { productionId: production.id, parentId: production.parentId, datasets: stage.options.datasets });
      return nothingLeft ? { kind: 'stop', reason: decision.reason } : { kind: 'go-on', notDone: decision.notDone };
    }
  }
}
