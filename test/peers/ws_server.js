#!/usr/bin/env node
// WebSocket test server for ws_port's end-to-end tests (node `ws`).
//
// Usage: node ws_server.js [--tls CERT KEY] [--client-ca CAFILE] [--exit-on-eof]
//                          [--deflate JSON]
//
// --deflate turns permessage-deflate on with the given `ws` perMessageDeflate
// options (JSON, e.g. '{"serverMaxWindowBits": 10}'; threshold defaults to 0
// here: every message is compressed). Without it compression is refused.
//
// Same contract as ws_server.py: listens on 127.0.0.1 port 0, prints
// "PORT <n>" on stdout once listening, and picks the behaviour by path:
//
//   /echo                     echo every message back, same type
//   /headers                  one text message: JSON of the request headers
//   /subprotocol              one text message: the agreed subprotocol (server
//                             preference "chat.v2", then "chat.v1") or ""
//   /close?code=C&reason=R    close with that code and reason
//   /status?code=S            refuse the upgrade with HTTP status S and
//                             WWW-Authenticate: Basic realm="ws_port"
//   /send?n=N&size=S&type=T   N messages of S bytes (text: letter i % 26,
//                             binary: byte i % 256), prints "SENT <path>",
//                             then waits for the client to close
//   /fragmented               "Hello, fragmented world" as three text
//                             fragments, then bytes 0..255 x4 as four binary
//                             fragments, then echo
//
// Every connection prints "OPEN <path>" and "CLOSED <path> <code> <reason>".
// Needs the npm package `ws`: npm ci --prefix test/peers

'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, 'node_modules', 'ws'));

const SERVER_PROTOCOLS = ['chat.v2', 'chat.v1'];
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

function say(line) {
  process.stdout.write(line + '\n');
}

function parseArgs(argv) {
  const opts = { tls: null, clientCa: null, exitOnEof: false, deflate: false };
  for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
      case '--tls': opts.tls = [argv[++i], argv[++i]]; break;
      case '--client-ca': opts.clientCa = argv[++i]; break;
      case '--exit-on-eof': opts.exitOnEof = true; break;
      case '--deflate': opts.deflate = { threshold: 0, ...JSON.parse(argv[++i]) }; break;
      default:
        process.stderr.write(`unknown argument ${argv[i]}\n`);
        process.exit(2);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

const server = opts.tls
  ? https.createServer({
      cert: fs.readFileSync(opts.tls[0]),
      key: fs.readFileSync(opts.tls[1]),
      ca: opts.clientCa ? fs.readFileSync(opts.clientCa) : undefined,
      requestCert: !!opts.clientCa,
      rejectUnauthorized: !!opts.clientCa,
    })
  : http.createServer();

server.on('request', (req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('WebSocket only\n');
});

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: 0x7fffffff,
  perMessageDeflate: opts.deflate,
  handleProtocols: (offered) => {
    for (const p of SERVER_PROTOCOLS) if (offered.has(p)) return p;
    return false;
  },
});

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/status') {
    const code = parseInt(url.searchParams.get('code') || '401', 10);
    const text = http.STATUS_CODES[code] || 'Refused';
    const body = 'upgrade refused by test server\n';
    say(`REFUSED ${req.url} ${code}`);
    socket.end(
      `HTTP/1.1 ${code} ${text}\r\n` +
        'WWW-Authenticate: Basic realm="ws_port"\r\n' +
        'Content-Type: text/plain\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body
    );
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, req, url));
});

function drain(ws) {
  ws.on('message', () => {});
}

function echo(ws) {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
}

function onConnection(ws, req, url) {
  say(`OPEN ${req.url}`);
  ws.on('close', (code, reason) => say(`CLOSED ${req.url} ${code} ${reason.toString()}`));
  ws.on('error', (err) => process.stderr.write(`ws error on ${req.url}: ${err.message}\n`));
  const q = url.searchParams;
  switch (url.pathname) {
    case '/echo':
      echo(ws);
      break;
    case '/headers': {
      const seen = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const k = req.rawHeaders[i].toLowerCase();
        const v = req.rawHeaders[i + 1];
        seen[k] = k in seen ? `${seen[k]}, ${v}` : v;
      }
      const sorted = {};
      for (const k of Object.keys(seen).sort()) sorted[k] = seen[k];
      ws.send(JSON.stringify(sorted));
      drain(ws);
      break;
    }
    case '/subprotocol':
      ws.send(ws.protocol || '');
      drain(ws);
      break;
    case '/close':
      ws.close(parseInt(q.get('code') || '1000', 10), q.get('reason') || '');
      break;
    case '/send': {
      const n = parseInt(q.get('n') || '1', 10);
      const size = parseInt(q.get('size') || '0', 10);
      const binary = q.get('type') === 'binary';
      drain(ws);
      let i = 0;
      // Send with the callback so that large batches respect the socket.
      const next = () => {
        if (i >= n) {
          say(`SENT ${req.url}`);
          return;
        }
        const payload = binary
          ? Buffer.alloc(size, i % 256)
          : LETTERS[i % 26].repeat(size);
        i++;
        ws.send(payload, { binary }, (err) => {
          if (!err) next();
        });
      };
      next();
      break;
    }
    case '/fragmented': {
      const text = ['Hello, ', 'fragmented ', 'world'];
      text.forEach((t, k) => ws.send(t, { binary: false, fin: k === text.length - 1 }));
      const chunk = Buffer.from([...Array(256).keys()]);
      for (let k = 0; k < 4; k++) ws.send(chunk, { binary: true, fin: k === 3 });
      echo(ws);
      break;
    }
    default:
      ws.close(4404, `unknown path ${url.pathname}`);
  }
}

server.listen(0, '127.0.0.1', () => say(`PORT ${server.address().port}`));

if (opts.exitOnEof) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
