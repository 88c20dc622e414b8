import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PhaseScheduler } from '../../../src/hub/scheduler.ts';
import type { ClientType } from '../../../src/hub/session.ts';
import { FakeClock } from './fakes.ts';

/** The phase timer alone, on a fake clock: which phase of which type runs when. No real timer runs. */

interface Run {
  type: ClientType;
  phase: number;
  at: number;
}

function setup(phases: number, intervals = { tui: 100, web: 250 }, work?: (run: Run) => void) {
  const clock = new FakeClock();
  const runs: Run[] = [];
  const scheduler = new PhaseScheduler({
    intervals,
    phases,
    clock,
    run: (type, phase) => {
      const run = { type, phase, at: clock.now() };
      runs.push(run);
      work?.(run);
    },
  });
  return { clock, runs, scheduler, of: (type: ClientType) => runs.filter((run) => run.type === type) };
}

describe('PhaseScheduler', () => {
  test('each interval runs send_phases phases per type, in phase order, on a fixed schedule', () => {
    const { clock, scheduler, of } = setup(5);
    scheduler.start();
    clock.advanceTo(1000);
    const tui = of('tui');
    const web = of('web');
    assert.equal(tui.length, 50, '5 phases per 100 ms');
    assert.equal(web.length, 20, '5 phases per 250 ms');
    assert.deepEqual(
      tui.slice(0, 7).map((run) => run.phase),
      [0, 1, 2, 3, 4, 0, 1],
    );
    assert.deepEqual(
      web.slice(0, 6).map((run) => run.phase),
      [0, 1, 2, 3, 4, 0],
    );
    assert.deepEqual(
      tui.slice(0, 5).map((run) => run.at),
      [20, 40, 60, 80, 100],
    );
    assert.deepEqual(
      web.slice(0, 3).map((run) => run.at),
      [50, 100, 150],
    );
  });

  test('a phase that takes time does not push the schedule back (unlike setInterval)', () => {
    // Each phase takes 7 ms of a 20 ms tui phase: the next one is still due on the grid, not 7 ms later.
    const { clock, scheduler, of } = setup(5, undefined, () => {
      clock.time += 7;
    });
    scheduler.start();
    clock.advanceTo(1000);
    assert.ok(of('tui').length >= 49, `tui ran ${of('tui').length} phases in 1 s`);
    assert.ok(of('web').length >= 19, `web ran ${of('web').length} phases in 1 s`);
  });

  test('earliest due first over both client types; a tie goes to tui', () => {
    const { clock, scheduler, runs } = setup(1);
    scheduler.start();
    clock.advanceTo(500);
    assert.deepEqual(
      runs.map((run) => `${run.type}@${run.at}`),
      ['tui@100', 'tui@200', 'web@250', 'tui@300', 'tui@400', 'tui@500', 'web@500'],
    );
  });

  test('when both are overdue, the type furthest behind for its interval goes first', () => {
    // A 600 ms stall in tui's phase at 100: web (due 250) is 1.8 of its intervals behind, tui (capped) 1.
    let stalled = false;
    const { clock, scheduler, runs } = setup(1, undefined, (run) => {
      if (!stalled && run.type === 'tui') {
        stalled = true;
        clock.time += 600;
      }
    });
    scheduler.start();
    clock.advanceTo(700);
    assert.deepEqual(runs[0], { type: 'tui', phase: 0, at: 100 });
    assert.equal(runs[1].type, 'web', 'web, furthest behind, runs first after the stall');
    assert.equal(runs[1].at, 700);
  });

  test('after a stall a type catches up one interval at most, then keeps its schedule', () => {
    // A 1 s stall: tui (100 ms) missed 10 intervals. Without the rule it would run 10 phases back to back.
    let stalled = false;
    const { clock, scheduler, of } = setup(4, undefined, (run) => {
      if (!stalled && run.type === 'tui') {
        stalled = true;
        clock.time += 1000;
      }
    });
    scheduler.start();
    clock.advanceTo(1025);
    // The phase that was due, then at most one interval's phases (4) and the one due now: 6, not 40 (tui) or 16 (web).
    const burst = of('tui').filter((run) => run.at === 1025);
    assert.ok(burst.length >= 4 && burst.length <= 6, `${burst.length} tui phases at once after the stall`);
    const webBurst = of('web').filter((run) => run.at === 1025);
    assert.ok(
      webBurst.length >= 4 && webBurst.length <= 6,
      `${webBurst.length} web phases at once after the stall`,
    );
    // Then the regular cadence: one tui phase per 25 ms.
    const before = of('tui').length;
    clock.advanceTo(1525);
    assert.equal(of('tui').length - before, 20);
  });

  test('advance() walks the phases round the interval, whoever calls it', () => {
    const { scheduler } = setup(3);
    assert.deepEqual(
      [0, 1, 2, 3].map(() => scheduler.advance('tui')),
      [0, 1, 2, 0],
    );
    assert.equal(scheduler.advance('web'), 0, 'each type has its own phase');
  });

  test('stop() cancels the timer, also from within a phase', () => {
    const { clock, scheduler, runs } = setup(1, undefined, () => scheduler.stop());
    scheduler.start();
    clock.advanceTo(1000);
    assert.equal(runs.length, 1);
    assert.equal(clock.pending, 0);
    const idle = setup(1);
    idle.scheduler.start();
    idle.scheduler.stop();
    idle.clock.advanceTo(1000);
    assert.equal(idle.runs.length, 0);
  });
});
