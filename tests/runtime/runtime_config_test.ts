import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { createRuntimeConfig, type RuntimeConfigOptions } from "../../runtime/runtime_config.ts";

Deno.test("createRuntimeConfig", async (t) => {
  await t.step("fills every default", () => {
    assertEquals({ ...createRuntimeConfig({ role: "client" }) }, {
      role: "client",
      isolation: "worker",
      dataTimeoutMicros: 60_000_000,
      minEventIntervalMs: null,
      eventCapacity: 1_000,
      eventOverflow: "drop-oldest",
      dataCapacity: 1_024,
      dataOverflow: "block",
      delivery: "aggregator",
      unknownCallerEventTtlMs: 10_000,
      timeSyncPort: null,
      timeSyncHostname: "0.0.0.0",
      channelSecurity: { mode: "insecure" },
    });
  });
  await t.step("accepts the role in any case and normalises it", () => {
    for (const role of ["Client", "CLIENT", "client"]) {
      assertEquals(createRuntimeConfig({ role }).role, "client");
    }
    assertEquals(createRuntimeConfig({ role: "Server" }).role, "server");
  });
  await t.step("keeps given values and null for unbounded", () => {
    const config = createRuntimeConfig({
      role: "server",
      isolation: "in-process",
      dataTimeoutMicros: null,
      minEventIntervalMs: 12.5,
      eventCapacity: 3,
      eventOverflow: "error",
      dataCapacity: 7,
      dataOverflow: "drop-newest",
    });
    assertEquals(
      [config.isolation, config.dataTimeoutMicros, config.minEventIntervalMs, config.dataCapacity],
      ["in-process", null, 12.5, 7],
    );
  });
  await t.step("is frozen", () => {
    const config = createRuntimeConfig({ role: "client" });
    assert(Object.isFrozen(config));
  });
  await t.step("rejects a missing or unknown role", () => {
    assertThrows(() => createRuntimeConfig({} as RuntimeConfigOptions), TypeError, "'role'");
    assertThrows(() => createRuntimeConfig({ role: 5 as unknown as string }), TypeError, "'role'");
    assertThrows(() => createRuntimeConfig({ role: "peer" }), RangeError, '"peer"');
    assertThrows(() => createRuntimeConfig(null as unknown as RuntimeConfigOptions), TypeError);
  });
  await t.step("rejects out-of-range numbers and unknown names", () => {
    const bad: [Partial<RuntimeConfigOptions>, string][] = [
      [{ isolation: "process" as "worker" }, "'isolation'"],
      [{ dataTimeoutMicros: 0 }, "'dataTimeoutMicros'"],
      [{ dataTimeoutMicros: 1.5 }, "'dataTimeoutMicros'"],
      [{ minEventIntervalMs: -1 }, "'minEventIntervalMs'"],
      [{ minEventIntervalMs: Infinity }, "'minEventIntervalMs'"],
      [{ eventCapacity: 0 }, "'eventCapacity'"],
      [{ dataCapacity: 2.5 }, "'dataCapacity'"],
      [{ eventOverflow: "drop" as "block" }, "'eventOverflow'"],
      [{ dataOverflow: "lossy" as "block" }, "'dataOverflow'"],
      [{ delivery: "queue" as "stream" }, "'delivery'"],
      [{ unknownCallerEventTtlMs: 0 }, "'unknownCallerEventTtlMs'"],
      [{ unknownCallerEventTtlMs: null as unknown as number }, "'unknownCallerEventTtlMs'"],
      [{ timeSyncPort: 70_000 }, "'timeSyncPort'"],
      [{ timeSyncPort: 1.5 }, "'timeSyncPort'"],
    ];
    for (const [options, message] of bad) {
      assertThrows(() => createRuntimeConfig({ role: "client", ...options }), RangeError, message);
    }
  });
  await t.step("rejects a malformed time server address or channel security", () => {
    assertThrows(
      () => createRuntimeConfig({ role: "server", timeSyncHostname: "" }),
      TypeError,
      "'timeSyncHostname'",
    );
    assertThrows(
      () => createRuntimeConfig({ role: "client", channelSecurity: { mode: "tls" } as never }),
      TypeError,
      "'channelSecurity'",
    );
  });
  await t.step("copies the channel security, so later changes do not reach it", () => {
    const security = { mode: "server-ca" as const, ca: "PEM", serverName: "a" };
    const config = createRuntimeConfig({ role: "client", channelSecurity: security });
    security.serverName = "b";
    assertEquals(config.channelSecurity, { mode: "server-ca", ca: "PEM", serverName: "a" });
    assert(Object.isFrozen(config.channelSecurity));
  });
});
