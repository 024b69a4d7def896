#!/usr/bin/env node
// The official Phoenix JS client (npm `phoenix`, with node's `ws` as its
// transport) run against test/peers/phoenix_server.py, to show that the
// test server behaves as Phoenix does.
//
//   node phoenix_js_client.js ws://127.0.0.1:PORT/socket [SCENARIO...]
//
// Runs each scenario (all by default) and prints `PASS <name>` or
// `FAIL <name> <why>`, then `DONE <passed> <failed>`; exits 0 when none
// failed. For wss, give the test CA in NODE_EXTRA_CA_CERTS.
"use strict";

const { Socket } = require("phoenix");
const WebSocket = require("ws");

const base = process.argv[2];
const only = process.argv.slice(3);

const fast = {
  transport: WebSocket,
  reconnectAfterMs: () => 20,
  rejoinAfterMs: () => 50,
};

function socket(params = {}, opts = {}) {
  return new Socket(base, Object.assign({ params: Object.assign({ token: "good" }, params) }, fast, opts));
}

function connected(sock) {
  return new Promise((resolve, reject) => {
    sock.onOpen(() => resolve(sock));
    sock.onError((e) => reject(new Error("socket error: " + (e && e.message))));
    sock.connect();
  });
}

// resolves with [status, response] of a push (join or event)
function reply(push) {
  return new Promise((resolve) => {
    push.receive("ok", (r) => resolve(["ok", r]));
    push.receive("error", (r) => resolve(["error", r]));
    push.receive("timeout", () => resolve(["timeout", null]));
  });
}

function next(channel, event) {
  return new Promise((resolve) => {
    const ref = channel.on(event, (payload) => {
      channel.off(event, ref);
      resolve(payload);
    });
  });
}

function eq(a, b, what) {
  const sa = JSON.stringify(a), sb = JSON.stringify(b);
  if (sa !== sb) throw new Error(`${what}: got ${sa}, expected ${sb}`);
}

function bytes(buf) {
  return Array.from(new Uint8Array(buf));
}

function within(ms, promise, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error("timeout: " + what)), ms)),
  ]);
}

async function joined(sock, topic, params = {}) {
  const channel = sock.channel(topic, params);
  const [status, resp] = await reply(channel.join());
  eq(status, "ok", "join " + topic);
  return [channel, resp];
}

const scenarios = {
  async join_ok(sock) {
    const [, resp] = await joined(sock, "room:a", { hello: "world" });
    eq(resp.topic, "room:a", "reply topic");
    eq(resp.params, { hello: "world" }, "reply params");
    eq(resp.connect_params.token, "good", "connect params");
  },
  async join_refused(sock) {
    const channel = sock.channel("room:forbidden", {});
    eq(await reply(channel.join()), ["error", { reason: "unauthorized" }], "refused join");
    const other = sock.channel("lobby", {});
    eq(await reply(other.join()), ["error", { reason: "unmatched topic" }], "no such channel");
  },
  async echo_and_error(sock) {
    const [channel] = await joined(sock, "room:echo");
    eq(await reply(channel.push("echo", { n: 1, s: "é" })), ["ok", { n: 1, s: "é" }], "echo");
    eq(await reply(channel.push("error", { why: "no" })), ["error", { why: "no" }], "error reply");
    eq(await reply(channel.push("nope", {})), ["error", { reason: "unhandled event" }], "unknown event");
  },
  async broadcast(sock) {
    const other = await connected(socket({ tag: "other" }));
    try {
      const [mine] = await joined(sock, "room:bc");
      const [theirs] = await joined(other, "room:bc");
      const gotMine = next(mine, "shout"), gotTheirs = next(theirs, "shout");
      eq(await reply(theirs.push("shout", { x: 1 })), ["ok", {}], "shout reply");
      eq(await within(2000, gotMine, "broadcast to me"), { x: 1 }, "broadcast to the other socket");
      eq(await within(2000, gotTheirs, "broadcast to sender"), { x: 1 }, "broadcast to the sender");
    } finally {
      other.disconnect();
    }
  },
  async server_push(sock) {
    const [channel] = await joined(sock, "room:push");
    const got = next(channel, "pushed");
    eq(await reply(channel.push("push_me", { p: true })), ["ok", {}], "push_me reply");
    eq(await within(2000, got, "pushed"), { p: true }, "pushed payload");
  },
  async binary(sock) {
    const [channel] = await joined(sock, "room:bin");
    const data = new Uint8Array([0, 1, 2, 255]).buffer;
    const [status, resp] = await reply(channel.push("echo", data));
    eq(status, "ok", "binary echo status");
    eq(bytes(resp), [0, 1, 2, 255], "binary echo (reply frame)");
    const pushed = next(channel, "pushed");
    await reply(channel.push("push_me", new Uint8Array([9, 8]).buffer));
    eq(bytes(await within(2000, pushed, "binary push")), [9, 8], "binary push frame");
    const shout = next(channel, "shout");
    await reply(channel.push("shout", new Uint8Array([7]).buffer));
    eq(bytes(await within(2000, shout, "binary broadcast")), [7], "binary broadcast frame");
  },
  async crash_rejoins(sock) {
    const channel = sock.channel("room:crash", {});
    let oks = 0;
    const rejoined = new Promise((resolve) => {
      channel.join().receive("ok", () => { oks += 1; if (oks === 2) resolve(); });
    });
    const errored = new Promise((resolve) => channel.onError(resolve));
    await within(2000, new Promise((r) => { const t = setInterval(() => { if (oks >= 1) { clearInterval(t); r(); } }, 5); }), "first join");
    channel.push("crash", {});
    await within(2000, errored, "phx_error");
    await within(3000, rejoined, "rejoin after phx_error");
    eq(await reply(channel.push("echo", { after: "crash" })), ["ok", { after: "crash" }], "echo after rejoin");
  },
  async server_leave(sock) {
    const [channel] = await joined(sock, "room:bye");
    const closed = new Promise((resolve) => channel.onClose(resolve));
    eq(await reply(channel.push("leave_me", {})), ["ok", {}], "leave_me reply");
    await within(2000, closed, "phx_close");
  },
  async client_leave(sock) {
    const [channel] = await joined(sock, "room:leave");
    eq(await reply(channel.leave()), ["ok", {}], "leave reply");
    const again = sock.channel("room:leave", {});
    eq((await reply(again.join()))[0], "ok", "join again");
  },
  async dropped_socket_rejoins(sock) {
    const channel = sock.channel("room:drop", { keep: 1 });
    let oks = 0;
    const rejoined = new Promise((resolve) => {
      channel.join().receive("ok", (r) => { oks += 1; if (oks === 2) resolve(r); });
    });
    await within(2000, new Promise((r) => { const t = setInterval(() => { if (oks >= 1) { clearInterval(t); r(); } }, 5); }), "first join");
    const closed = new Promise((resolve) => sock.onClose(resolve));
    channel.push("drop_socket", {});
    await within(2000, closed, "socket closed");
    const resp = await within(5000, rejoined, "rejoin after reconnect");
    eq(resp.params, { keep: 1 }, "rejoin params");
  },
  async server_close_rejoins(sock) {
    const channel = sock.channel("room:close", {});
    let oks = 0;
    const rejoined = new Promise((resolve) => {
      channel.join().receive("ok", () => { oks += 1; if (oks === 2) resolve(); });
    });
    await within(2000, new Promise((r) => { const t = setInterval(() => { if (oks >= 1) { clearInterval(t); r(); } }, 5); }), "first join");
    channel.push("close_socket", { code: 1001 });
    await within(5000, rejoined, "rejoin after a 1001 close");
  },
  async heartbeat(sock) {
    // heartbeatIntervalMs is 100 here: two answered heartbeats
    let answers = 0;
    const two = new Promise((resolve) => sock.onMessage((m) => {
      if (m.topic === "phoenix" && m.event === "phx_reply" && m.payload.status === "ok") {
        answers += 1;
        if (answers === 2) resolve();
      }
    }));
    await within(3000, two, "two heartbeat replies");
  },
  async heartbeat_timeout() {
    const sock = await connected(socket({ heartbeat: "ignore" }, { heartbeatIntervalMs: 100 }));
    try {
      const closed = new Promise((resolve) => sock.onClose(resolve));
      await within(3000, closed, "close after an unanswered heartbeat");
    } finally {
      sock.disconnect();
    }
  },
  async forbidden() {
    const sock = socket({ token: "bad" }, { reconnectAfterMs: () => 60000 });
    try {
      await within(3000, connected(sock).then(() => { throw new Error("connected"); }, () => "refused"), "403");
    } finally {
      sock.disconnect();
    }
  },
  async serializer_v1() {
    const encode = (msg, cb) => cb(JSON.stringify({ join_ref: msg.join_ref, ref: msg.ref, topic: msg.topic, event: msg.event, payload: msg.payload }));
    const decode = (raw, cb) => { const m = JSON.parse(raw); cb({ join_ref: m.join_ref, ref: m.ref, topic: m.topic, event: m.event, payload: m.payload }); };
    const sock = await connected(socket({}, { vsn: "1.0.0", encode, decode }));
    try {
      const [channel] = await joined(sock, "room:v1");
      eq(await reply(channel.push("echo", { v: 1 })), ["ok", { v: 1 }], "V1 echo");
      const got = next(channel, "pushed");
      await reply(channel.push("push_me", { w: 2 }));
      eq(await within(2000, got, "V1 push"), { w: 2 }, "V1 push");
    } finally {
      sock.disconnect();
    }
  },
};

const needsSocket = (name) => !["heartbeat_timeout", "forbidden", "serializer_v1"].includes(name);

async function main() {
  const names = only.length ? only : Object.keys(scenarios);
  let passed = 0, failed = 0;
  for (const name of names) {
    let sock = null;
    try {
      if (needsSocket(name)) sock = await connected(socket({ tag: name }, { heartbeatIntervalMs: 100 }));
      await within(15000, scenarios[name](sock), name);
      console.log("PASS " + name);
      passed += 1;
    } catch (e) {
      console.log("FAIL " + name + " " + (e && e.message));
      failed += 1;
    } finally {
      if (sock) sock.disconnect();
    }
  }
  console.log(`DONE ${passed} ${failed}`);
  process.exit(failed ? 1 : 0);
}

main();
