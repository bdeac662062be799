/**
 * The claim low-water mark (src/store/postgres/claim-watermark.ts) with a fake clock: a policy
 * object over plain numbers. The PostgreSQL behaviour it protects is covered by store-postgres
 * and cluster-failover; this pins the race between an uncommitted enqueue and a claim.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ClaimWatermark } from "../src/store/postgres/claim-watermark.js";

describe("claim low-water mark", () => {
  it("does not rise above work announced before its commit (late recipients on PostgreSQL)", () => {
    let wall = 1_000_000;
    const mark = new ClaimWatermark(60_000, () => wall, 1_000);
    // A claim finds nothing: the mark rises to its `now`.
    const first = mark.scanFrom(wall);
    mark.claimed(first, wall, undefined, false);
    wall += 10;
    // An accept batch announces recipients due at `t` (before its COMMIT) ...
    const t = wall;
    mark.lower(t);
    // ... a claim starts with a snapshot that cannot see them yet, and finds nothing ...
    wall += 5;
    const from = mark.scanFrom(wall);
    assert.ok(from <= t);
    mark.claimed(from, wall + 20, undefined, false);
    // ... the batch commits: the next claim must still scan from at or below `t`, or those
    // recipients wait for the full scan (60 s).
    wall += 30;
    assert.ok(mark.scanFrom(wall) <= t, `next scan from ${mark.scanFrom(wall)} > due ${t}`);
  });

  it("rises again once the announced commits have had their time (dead versions stay passed)", () => {
    let wall = 2_000_000;
    const mark = new ClaimWatermark(60_000, () => wall, 1_000);
    mark.claimed(mark.scanFrom(wall), wall, undefined, false);
    mark.lower(wall);
    const t = wall;
    wall += 1_500; // past pendingCommitMs
    const from = mark.scanFrom(wall);
    mark.claimed(from, wall, wall - 100, false);
    assert.equal(mark.scanFrom(wall + 1), wall - 100);
    assert.ok(wall - 100 > t);
  });

  it("keeps the lowest of several recent announcements, and forgets them in time", () => {
    let wall = 3_000_000;
    const mark = new ClaimWatermark(60_000, () => wall, 1_000);
    mark.claimed(mark.scanFrom(wall), wall, undefined, false);
    mark.lower(wall - 50); // a deferral due earlier
    wall += 100;
    mark.lower(wall); // a later accept
    wall += 100;
    mark.claimed(mark.scanFrom(wall), wall, undefined, false);
    assert.equal(mark.scanFrom(wall), 3_000_000 - 50);
    for (let i = 0; i < 10_000; i++) {
      wall += 1;
      mark.lower(wall);
    }
    wall += 2_000;
    mark.claimed(mark.scanFrom(wall), wall, undefined, false);
    assert.equal(mark.scanFrom(wall), wall);
  });
});
