// Drives an edge-runtime sidecar with the official Dapr JavaScript SDK (@dapr/dapr), once over
// HTTP and once over gRPC, and prints what it observed as one JSON line per protocol.
// test_js_sdk.py starts the sidecar, runs this and checks the report (the expectations live
// there, so this program only records).
//
// usage: node sdk_check.js <http-port> <grpc-port>
"use strict";

const { DaprClient, CommunicationProtocolEnum, LogLevel } = require("@dapr/dapr");

const STORE = "statestore";

// The reason of a google.rpc.ErrorInfo (field 1, a string), read from its wire bytes: the SDK
// ships no schema for it, and the reason is what Dapr SDKs report as the error code.
function errorInfoReason(bytes) {
  let i = 0;
  while (i < bytes.length) {
    const tag = bytes[i++];
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const b = bytes[i++];
      len |= (b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    if (tag === 0x0a) return Buffer.from(bytes.slice(i, i + len)).toString("utf-8");
    i += len;
  }
  return null;
}

// An error as the SDK surfaced it: HTTP errors carry {status, error_msg} as JSON in the
// message; gRPC errors are ConnectErrors with a numeric gRPC code and undecoded details.
function describe(err) {
  if (err === undefined || err === null) return null;
  const out = { name: err.name || "Error" };
  try {
    const parsed = JSON.parse(err.message);
    out.status = parsed.status;
    try {
      out.body = JSON.parse(parsed.error_msg);
    } catch (_e) {
      out.body = parsed.error_msg;
    }
  } catch (_e) {
    out.message = err.rawMessage ?? err.message;
  }
  if (typeof err.code === "number") out.code = err.code;
  for (const detail of err.details || []) {
    if (detail.type === "google.rpc.ErrorInfo" && detail.value) {
      out.reason = errorInfoReason(detail.value);
    }
  }
  return out;
}

// Run fn; report either what it returned (an {error} object is how the HTTP client reports
// some failures) or what it threw.
async function capture(fn) {
  try {
    const value = await fn();
    if (value && value.error) return { returnedError: describe(value.error) };
    return { returned: value === undefined ? null : value };
  } catch (err) {
    return { thrown: describe(err) };
  }
}

function byKey(items) {
  return items
    .map((i) => ({
      key: i.key,
      data: i.data === "" || i.data === undefined ? null : i.data,
      hasEtag: Boolean(i.etag),
    }))
    .sort((a, b) => a.key.localeCompare(b.key));
}

async function check(name, protocol, port) {
  const client = new DaprClient({
    daprHost: "127.0.0.1",
    daprPort: String(port),
    communicationProtocol: protocol,
    logger: { level: LogLevel.Error },
  });
  const p = name; // key prefix: the two runs share one store
  const report = { protocol: name };
  await client.start();

  await client.state.save(STORE, [
    { key: `${p}-k1`, value: { n: 1 } },
    { key: `${p}-k2`, value: "two" },
  ]);
  report.get = await client.state.get(STORE, `${p}-k1`);
  const bulk = await client.state.getBulk(STORE, [`${p}-k1`, `${p}-k2`, `${p}-missing`]);
  report.bulk = byKey(bulk);

  const etag = bulk.find((i) => i.key === `${p}-k1`).etag;
  report.saveWithEtag = await capture(() =>
    client.state.save(STORE, [{ key: `${p}-k1`, value: { n: 2 }, etag }]),
  );
  report.saveWithStaleEtag = await capture(() =>
    client.state.save(STORE, [{ key: `${p}-k1`, value: { n: 3 }, etag }]),
  );
  report.afterEtagSaves = await client.state.get(STORE, `${p}-k1`);

  await client.state.transaction(STORE, [
    { operation: "upsert", request: { key: `${p}-t1`, value: "tx" } },
    { operation: "delete", request: { key: `${p}-k2` } },
  ]);
  report.afterTransaction = byKey(await client.state.getBulk(STORE, [`${p}-t1`, `${p}-k2`]));

  report.publish = await capture(() =>
    client.pubsub.publish("mem", `js/${name}`, { from: name }),
  );

  const md = await client.metadata.get();
  report.metadata = {
    id: md.id,
    components: (md.components || []).map((c) => `${c.name}:${c.type}`).sort(),
  };

  report.unknownStore = await capture(() => client.state.get("nostore", "k"));

  await client.stop();
  return report;
}

async function main() {
  const [httpPort, grpcPort] = process.argv.slice(2);
  const runs = [
    ["http", CommunicationProtocolEnum.HTTP, httpPort],
    ["grpc", CommunicationProtocolEnum.GRPC, grpcPort],
  ];
  for (const [name, protocol, port] of runs) {
    let report;
    try {
      report = await check(name, protocol, port);
    } catch (err) {
      report = { protocol: name, failed: describe(err), stack: String(err && err.stack) };
    }
    process.stdout.write(JSON.stringify(report) + "\n");
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(String(err && err.stack) + "\n");
    process.exit(1);
  },
);
