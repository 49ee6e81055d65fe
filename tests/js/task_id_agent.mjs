// A small @a2a-js/sdk 1.3.0 agent for the end-to-end tests
// (tests/e2e/test_task_ids.py): JSON-RPC 1.0 (non-streaming calls) on
// node:http, since the SDK's own HTTP server needs Express. Its task ids carry
// their contextId through agents/js/context-task-ids.mjs (--task-ids
// context, the default) or are the SDK's UUIDs (--task-ids uuid).
//
// A first message asks for a date (input-required); the next one on the
// task completes it. GET /debug/contexts and GET|DELETE /debug/requests
// answer as the demo agent's do (replica name, contexts with their tasks;
// what this replica received, with its x-context-id values).
//
//   node tests/js/task_id_agent.mjs --name js-1 --port 9201 [--task-ids uuid]

import http from 'node:http';
import { parseArgs } from 'node:util';
import { TaskState } from '@a2a-js/sdk';
import {
  AgentEvent,
  DefaultRequestHandler,
  InMemoryTaskStore,
  JsonRpcTransportHandler,
  RequestContext,
  ServerCallContext,
} from '@a2a-js/sdk/server';
import { withContextTaskIds } from '../../agents/js/context-task-ids.mjs';

const { values: args } = parseArgs({
  options: {
    name: { type: 'string', default: 'js-1' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '9201' },
    'task-ids': { type: 'string', default: 'context' },
  },
});

const contexts = new Map();
const requests = [];

const executor = {
  async execute(rc, bus) {
    const held = contexts.get(rc.contextId) ?? { turns: 0, tasks: [] };
    held.turns += 1;
    if (!held.tasks.includes(rc.taskId)) held.tasks.push(rc.taskId);
    contexts.set(rc.contextId, held);
    const state = rc.task ? TaskState.TASK_STATE_COMPLETED : TaskState.TASK_STATE_INPUT_REQUIRED;
    bus.publish(AgentEvent.task({
      id: rc.taskId, contextId: rc.contextId, status: { state }, history: [rc.userMessage], artifacts: [],
    }));
    bus.finished();
  },
  async cancelTask() {},
};

const url = `http://${args.host}:${args.port}/`;
const card = {
  name: args.name, description: 'a2a-affinity test agent', version: '1.0.0',
  supportedInterfaces: [{ url, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
  capabilities: {}, defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'], skills: [],
};
const Handler = args['task-ids'] === 'uuid'
  ? DefaultRequestHandler
  : withContextTaskIds(DefaultRequestHandler, RequestContext);
const rpc = new JsonRpcTransportHandler(new Handler(card, new InMemoryTaskStore(), executor));

function reply(res, status, doc) {
  const body = JSON.stringify(doc);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks).toString('utf8');
  if (req.url === '/debug/contexts') {
    return reply(res, 200, { replica: args.name, contexts: Object.fromEntries(contexts) });
  }
  if (req.url === '/debug/requests') {
    if (req.method === 'DELETE') requests.length = 0;
    return reply(res, 200, { replica: args.name, requests });
  }
  if (req.url === '/.well-known/agent-card.json') return reply(res, 200, card);
  const raw = req.headers['x-context-id'];
  requests.push({
    method: req.method, path: req.url, body,
    x_context_id: raw === undefined ? [] : [].concat(raw),
  });
  if (req.method !== 'POST' || req.url !== '/') return reply(res, 404, { error: 'not found' });
  const out = await rpc.handle(body, new ServerCallContext());
  if (out && typeof out[Symbol.asyncIterator] === 'function') {
    return reply(res, 400, { error: 'streaming is not served here' });
  }
  return reply(res, 200, out);
});
server.keepAliveTimeout = 300_000;
server.listen(Number(args.port), args.host);
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
