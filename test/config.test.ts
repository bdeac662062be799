import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { envNameToPath, loadConfig, maskSecrets, pathToEnvName } from "../src/config/load.js";
import { UsageError } from "../src/errors.js";
import { tempDataDir } from "./support/petrel-process.js";

describe("configuration", () => {
  it("runs on the defaults with no file and no environment", () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.smtp.submission.port, 587);
    assert.equal(config.smtp.submissions.port, 465);
    assert.equal(config.smtp.alternate.enabled, false);
    assert.equal(config.smtp.limits.maxMessageSize, 30 * 1024 * 1024);
    assert.equal(config.smtp.limits.maxRecipients, 1000);
    assert.equal(config.smtp.tls.minVersion, "TLSv1.2");
    assert.match(config.dataDir, /\/data$/);
  });

  it("layers file < environment < flags", () => {
    const dir = tempDataDir();
    const file = join(dir, "petrel.yaml");
    writeFileSync(
      file,
      "smtp:\n  submission:\n    port: 1587\n  submissions:\n    port: 1465\nauth:\n  maxFailures: 3\n",
    );
    const config = loadConfig({
      file,
      env: {
        PETREL_SMTP__SUBMISSIONS__PORT: "2465",
        PETREL_AUTH__TRUSTED_NETWORKS: "[{network: 10.0.0.0/8}]",
      },
      overrides: { "auth.maxFailures": 7 },
    });
    assert.equal(config.smtp.submission.port, 1587);
    assert.equal(config.smtp.submissions.port, 2465);
    assert.equal(config.auth.maxFailures, 7);
    assert.deepEqual(config.auth.trustedNetworks, [{ network: "10.0.0.0/8", account: "default" }]);
  });

  it("fails on unknown or invalid keys with the path and the reason", () => {
    const dir = tempDataDir();
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "smtp:\n  submision:\n    port: 25\n  limits:\n    maxRecipients: -1\n");
    assert.throws(
      () => loadConfig({ file, env: {} }),
      (err: unknown) =>
        err instanceof UsageError &&
        /smtp: unknown key submision/.test(err.message) &&
        /smtp\.limits\.maxRecipients:/.test(err.message),
    );
    // Issue 11: a value from the environment is named by its variable, not its key path.
    assert.throws(
      () => loadConfig({ env: { PETREL_SMTP__SUBMISION__PORT: "2587" } }),
      (err: unknown) =>
        err instanceof UsageError &&
        err.message === "invalid configuration:\n  PETREL_SMTP__SUBMISION__PORT: unknown key submision",
    );
    assert.throws(
      () => loadConfig({ env: { PETREL_SMTP__SUBMISSION__PORT: "x" } }),
      /\n {2}PETREL_SMTP__SUBMISSION__PORT \(smtp\.submission\.port\): .*expected number/,
    );
    assert.throws(
      () => loadConfig({ env: { PETREL_AUTH__TRUSTED_NETWORKS: "[{network: 10.0.0.0/33}]" } }),
      /\n {2}PETREL_AUTH__TRUSTED_NETWORKS \(auth\.trustedNetworks\.0\.network\): /,
    );
    // A flag is named as the option; the file's own mistakes keep their key path (above).
    assert.throws(
      () => loadConfig({ env: {}, overrides: { "smtp.submission.port": -1 } }),
      /\n {2}option \(smtp\.submission\.port\): /,
    );
  });

  it("maps environment names to key paths and back", () => {
    assert.deepEqual(envNameToPath("PETREL_SMTP__LIMITS__MAX_MESSAGE_SIZE"), [
      "smtp",
      "limits",
      "maxMessageSize",
    ]);
    assert.deepEqual(envNameToPath("PETREL_DATA_DIR"), ["dataDir"]);
    assert.equal(pathToEnvName(["smtp", "submission", "port"]), "PETREL_SMTP__SUBMISSION__PORT");
  });
});

describe("petrel config masking", () => {
  it("masks relay passwords in every route", () => {
    const config = loadConfig({
      env: {
        PETREL_DELIVERY__ROUTES:
          "[{match: '*', transport: relay, host: smtp.example, auth: {user: apikey, pass: s3cret}}, {match: a.example, transport: mx}]",
      },
    });
    const masked = maskSecrets(config) as {
      delivery: { routes: Array<{ auth?: { user: string; pass: string } }> };
    };
    assert.deepEqual(masked.delivery.routes[0]!.auth, { user: "apikey", pass: "********" });
    assert.equal(masked.delivery.routes[1]!.auth, undefined);
    assert.ok(!JSON.stringify(masked).includes("s3cret"));
    assert.equal(
      (config.delivery.routes[0] as { auth?: { pass: string } }).auth?.pass,
      "s3cret",
      "the config itself is untouched",
    );
  });
});
