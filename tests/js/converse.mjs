#!/usr/bin/env node
// Multi-turn A2A conversations driven by the JavaScript SDK (@a2a-js/sdk), the
// second independent client of the a2a-affinity tests. Prints one JSON document.
//
//   node converse.mjs [--transport jsonrpc|jsonrpc-0.3|rest|rest-0.3]
//                     [--conversations N] [--plain-turns N] [--no-stream]
//                     [--followup with-context|task-only] [--ignore-card-url] URL [URL...]
//
// Each conversation: plain turns (the first without a contextId, later ones
// reuse the contextId the agent returned), a streaming turn, "book a table"
// (input-required) and its follow-up carrying the taskId, "book a room" and a
// cancelTask on it, then getTask for every task. With several URLs each request
// goes to the next one, as a load balancer without affinity would send it.
// The agent (demo/agent.py) answers "<replica>: turn <n> of context ..".

import { randomUUID } from 'node:crypto';
import {
  ClientFactory,
  ClientFactoryOptions,
  DefaultAgentCardResolver,
  JsonRpcTransportFactory,
  RestTransportFactory,
} from '@a2a-js/sdk/client';
import { Role, TaskState } from '@a2a-js/sdk';

const TRANSPORTS = {
  jsonrpc: ['JSONRPC', '1.0'],
  'jsonrpc-0.3': ['JSONRPC', '0.3'],
  rest: ['HTTP+JSON', '1.0'],
  'rest-0.3': ['HTTP+JSON', '0.3'],
};
const PLAIN_TEXTS = ['hello', 'how are you', 'tell me more', 'and then?', 'go on'];
const REPLY = /^([^:\s]+): turn (\d+) of context/;

function parseArgs(argv) {
  const opts = {
    transport: 'jsonrpc',
    conversations: 2,
    plainTurns: 2,
    stream: true,
    cancel: true,
    followup: 'with-context',
    useCardUrl: true,
    timeoutMs: 15000,
    urls: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--transport') opts.transport = next();
    else if (a === '--conversations' || a === '-n') opts.conversations = Number(next());
    else if (a === '--plain-turns') opts.plainTurns = Number(next());
    else if (a === '--no-stream') opts.stream = false;
    else if (a === '--no-cancel') opts.cancel = false;
    else if (a === '--followup') opts.followup = next();
    else if (a === '--ignore-card-url') opts.useCardUrl = false;
    else if (a === '--timeout-ms') opts.timeoutMs = Number(next());
    else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
    else opts.urls.push(a.replace(/\/+$/, ''));
  }
  if (!TRANSPORTS[opts.transport]) throw new Error(`unknown transport ${opts.transport}`);
  if (!['with-context', 'task-only'].includes(opts.followup)) {
    throw new Error('--followup is with-context or task-only');
  }
  if (opts.urls.length === 0) throw new Error('give at least one agent URL');
  return opts;
}

// TASK_STATE_INPUT_REQUIRED -> input-required, the spelling the Python driver uses.
function stateName(state) {
  const name = typeof state === 'number' ? TaskState[state] : String(state ?? '');
  return name.replace(/^TASK_STATE_/, '').toLowerCase().replace(/_/g, '-');
}

function messageText(msg) {
  return (msg?.parts ?? [])
    .map((p) => (p.content?.$case === 'text' ? p.content.value : p.text ?? ''))
    .join('');
}

function parseReply(text) {
  const m = REPLY.exec(text ?? '');
  return m ? { replica: m[1], agentTurn: Number(m[2]) } : { replica: null, agentTurn: null };
}

function errorKind(err) {
  const text = `${err?.name ?? ''} ${err?.message ?? err}`.toLowerCase();
  if (text.includes('tasknotfound') || (text.includes('task') && text.includes('not found'))) {
    return 'task-not-found';
  }
  if (text.includes('does not match')) return 'context-mismatch';
  if (text.includes('abort') || text.includes('timeout')) return 'timeout';
  return err?.name ?? 'Error';
}

async function openEndpoint(baseUrl, opts) {
  const [binding, version] = TRANSPORTS[opts.transport];
  const resolver = new DefaultAgentCardResolver({ legacyCompat: { enabled: true } });
  const card = await resolver.resolve(baseUrl);
  const chosen = (card.supportedInterfaces ?? []).find(
    (i) => i.protocolBinding === binding && String(i.protocolVersion ?? '').startsWith(version),
  );
  if (!chosen) throw new Error(`${baseUrl}: agent card has no ${binding} ${version} interface`);
  const url = opts.useCardUrl ? chosen.url.replace(/\/+$/, '') : baseUrl;
  // Only the chosen interface stays in the card: the factory would otherwise
  // prefer the 1.0 interface of the same binding.
  const narrowed = { ...card, supportedInterfaces: [{ ...chosen, url }] };
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [
        new JsonRpcTransportFactory({ legacyCompat: { enabled: true } }),
        new RestTransportFactory({ legacyCompat: { enabled: true } }),
      ],
      cardResolver: resolver,
    }),
  );
  const client = await factory.createFromAgentCard(narrowed);
  return { url, cardUrl: chosen.url, client };
}

class Conversation {
  constructor(number, pick, opts) {
    this.number = number;
    this.pick = pick;
    this.opts = opts;
    this.contextId = null;
    this.turns = [];
    this.calls = [];
  }

  message(text, { taskId = null, withContext = true } = {}) {
    const msg = {
      messageId: randomUUID(),
      role: Role.ROLE_USER,
      parts: [{ content: { $case: 'text', value: text } }],
    };
    if (withContext && this.contextId) msg.contextId = this.contextId;
    if (taskId) msg.taskId = taskId;
    return msg;
  }

  learn(turn, taskId, contextId) {
    if (taskId) turn.taskId = taskId;
    if (contextId) turn.contextId = contextId;
    if (!this.contextId && contextId) this.contextId = contextId;
  }

  applyTask(turn, task) {
    this.learn(turn, task.id, task.contextId);
    turn.state = stateName(task.status?.state);
    Object.assign(turn, parseReply(messageText(task.status?.message)));
  }

  async send(kind, text, options = {}) {
    const turn = {
      kind,
      text,
      expectedTurn: this.turns.length + 1,
      ok: false,
      replica: null,
      agentTurn: null,
      state: null,
      taskId: null,
      contextId: null,
      events: 0,
      error: null,
      errorKind: null,
    };
    this.turns.push(turn);
    const endpoint = this.pick();
    turn.target = endpoint.url;
    const request = { message: this.message(text, options) };
    const signal = AbortSignal.timeout(this.opts.timeoutMs);
    try {
      if (kind === 'stream') {
        for await (const event of endpoint.client.sendMessageStream(request, { signal })) {
          turn.events += 1;
          const p = event.payload;
          if (!p) continue;
          if (p.$case === 'task') this.applyTask(turn, p.value);
          else if (p.$case === 'statusUpdate') {
            this.learn(turn, p.value.taskId, p.value.contextId);
            turn.state = stateName(p.value.status?.state);
            const reply = parseReply(messageText(p.value.status?.message));
            if (reply.replica) Object.assign(turn, reply);
          } else if (p.$case === 'artifactUpdate') {
            this.learn(turn, p.value.taskId, p.value.contextId);
          } else if (p.$case === 'message') {
            this.learn(turn, p.value.taskId, p.value.contextId);
            Object.assign(turn, parseReply(messageText(p.value)));
          }
        }
      } else {
        const result = await endpoint.client.sendMessage(request, { signal });
        turn.events = 1;
        if (result && 'status' in result && 'id' in result) this.applyTask(turn, result);
        else if (result) {
          this.learn(turn, result.taskId, result.contextId);
          Object.assign(turn, parseReply(messageText(result)));
        }
      }
      turn.ok = turn.replica !== null;
      if (!turn.ok) turn.error = 'answer did not name a replica';
    } catch (err) {
      turn.error = `${err?.name ?? 'Error'}: ${err?.message ?? err}`.slice(0, 300);
      turn.errorKind = errorKind(err);
    }
    return turn;
  }

  async taskCall(op, taskId) {
    const call = { op, taskId, ok: false, state: null, error: null, errorKind: null };
    this.calls.push(call);
    const endpoint = this.pick();
    call.target = endpoint.url;
    const signal = AbortSignal.timeout(this.opts.timeoutMs);
    try {
      const task =
        op === 'get'
          ? await endpoint.client.getTask({ id: taskId }, { signal })
          : await endpoint.client.cancelTask({ id: taskId }, { signal });
      call.state = stateName(task.status?.state);
      call.ok =
        task.id === taskId &&
        task.contextId === this.contextId &&
        (op !== 'cancel' || call.state === 'canceled');
      if (task.contextId !== this.contextId) call.error = `task has contextId ${task.contextId}`;
    } catch (err) {
      call.error = `${err?.name ?? 'Error'}: ${err?.message ?? err}`.slice(0, 300);
      call.errorKind = errorKind(err);
    }
    return call;
  }

  async run() {
    for (let i = 0; i < this.opts.plainTurns; i++) {
      await this.send('plain', PLAIN_TEXTS[i % PLAIN_TEXTS.length]);
    }
    if (this.opts.stream) await this.send('stream', 'stream a story');
    const asked = await this.send('book', 'book a table');
    if (asked.taskId && asked.state === 'input-required') {
      await this.send('followup', 'friday', {
        taskId: asked.taskId,
        withContext: this.opts.followup === 'with-context',
      });
    } else {
      this.turns.push({
        kind: 'followup',
        text: 'friday',
        expectedTurn: this.turns.length + 1,
        ok: false,
        error: `booking not in input-required (state ${asked.state})`,
        errorKind: asked.errorKind ?? 'no-input-required',
      });
    }
    if (this.opts.cancel) {
      const room = await this.send('cancel-book', 'book a room');
      if (room.taskId) await this.taskCall('cancel', room.taskId);
    }
    const taskIds = [...new Set(this.turns.map((t) => t.taskId).filter(Boolean))];
    for (const id of taskIds) await this.taskCall('get', id);
    return this.result();
  }

  result() {
    const replicas = [...new Set(this.turns.map((t) => t.replica).filter(Boolean))];
    const historyIntact =
      this.turns.length > 0 && this.turns.every((t) => t.ok && t.agentTurn === t.expectedTurn);
    const count = (items, pred) => [items.filter(pred).length, items.length];
    return {
      number: this.number,
      contextId: this.contextId,
      replicas,
      historyIntact,
      oneReplica: replicas.length === 1 && this.turns.every((t) => t.ok),
      followupsOk: count(
        this.turns.filter((t) => t.kind === 'followup'),
        (t) => t.ok && t.state === 'completed',
      ),
      getsOk: count(this.calls.filter((c) => c.op === 'get'), (c) => c.ok),
      cancelsOk: count(this.calls.filter((c) => c.op === 'cancel'), (c) => c.ok),
      turns: this.turns,
      calls: this.calls,
    };
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const endpoints = [];
  for (const url of opts.urls) endpoints.push(await openEndpoint(url, opts));
  const conversations = [];
  for (let n = 0; n < opts.conversations; n++) {
    let k = n;
    const pick = () => endpoints[k++ % endpoints.length];
    conversations.push(await new Conversation(n + 1, pick, opts).run());
  }
  const sum = (key) =>
    conversations.reduce((acc, c) => [acc[0] + c[key][0], acc[1] + c[key][1]], [0, 0]);
  const errors = {};
  for (const c of conversations) {
    for (const item of [...c.turns, ...c.calls]) {
      if (item.errorKind) errors[item.errorKind] = (errors[item.errorKind] ?? 0) + 1;
    }
  }
  const summary = {
    client: '@a2a-js/sdk',
    transport: opts.transport,
    urls: endpoints.map((e) => e.url),
    conversations: conversations.length,
    turns: conversations.reduce((acc, c) => acc + c.turns.length, 0),
    historyIntact: conversations.filter((c) => c.historyIntact).length,
    oneReplica: conversations.filter((c) => c.oneReplica).length,
    followupsOk: sum('followupsOk'),
    getsOk: sum('getsOk'),
    cancelsOk: sum('cancelsOk'),
    errors,
  };
  process.stdout.write(`${JSON.stringify({ summary, conversations }, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`converse.mjs: ${err?.stack ?? err}\n`);
  process.exit(2);
});
