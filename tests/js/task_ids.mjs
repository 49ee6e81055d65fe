// Checks agents/js/context-task-ids.mjs with @a2a-js/sdk 1.3.0, in process:
// the shared vectors (crates/core/tests/task_id_vectors.json), then a
// DefaultRequestHandler wrapped by withContextTaskIds serving first turns,
// GetTask and follow-ups by taskId. Prints one JSON document for
// tests/test_task_id_format.py.
//
//   node tests/js/task_ids.mjs crates/core/tests/task_id_vectors.json

import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Role, TaskState } from '@a2a-js/sdk';
import {
  AgentEvent,
  DefaultRequestHandler,
  InMemoryTaskStore,
  RequestContext,
  ServerCallContext,
} from '@a2a-js/sdk/server';
import { decodeTaskId, encodeTaskId, withContextTaskIds } from '../../agents/js/context-task-ids.mjs';

const vectors = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const mismatches = [];
for (const v of vectors.encode) {
  const got = encodeTaskId(v.context_id, Buffer.from(v.random, 'hex'));
  if (got !== v.task_id) mismatches.push({ want: v.task_id, got });
  if (decodeTaskId(v.task_id) !== v.context_id) mismatches.push({ undecoded: v.task_id });
}
for (const id of vectors.foreign) {
  if (decodeTaskId(id) !== null) mismatches.push({ foreign_decoded: id });
}

// An agent that asks for a date, then completes the task.
const executor = {
  async execute(rc, bus) {
    const state = rc.task ? TaskState.TASK_STATE_COMPLETED : TaskState.TASK_STATE_INPUT_REQUIRED;
    bus.publish(AgentEvent.task({
      id: rc.taskId,
      contextId: rc.contextId,
      status: { state },
      history: [rc.userMessage],
      artifacts: [],
    }));
    bus.finished();
  },
  async cancelTask() {},
};
const card = {
  name: 'task-id check', description: 'checks task ids', version: '1.0.0',
  supportedInterfaces: [{ url: 'http://127.0.0.1/', protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
  capabilities: {}, defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'], skills: [],
};
const Handler = withContextTaskIds(DefaultRequestHandler, RequestContext);
const handler = new Handler(card, new InMemoryTaskStore(), executor);
const context = () => new ServerCallContext();
const message = (text, ids) => ({
  messageId: randomUUID(), role: Role.ROLE_USER, parts: [{ text }], ...ids,
});
const unwrap = (r) => r?.task ?? r?.payload?.value ?? r;

const tasks = [];
for (const contextId of [randomUUID(), randomUUID(), 'conversation café', ' padded ']) {
  const first = unwrap(await handler.sendMessage({ message: message('book', { contextId }) }, context()));
  const got = unwrap(await handler.getTask({ id: first.id }, context()));
  const follow = unwrap(await handler.sendMessage({ message: message('at 8', { taskId: first.id }) }, context()));
  tasks.push({
    contextId,
    taskId: first.id,
    taskContextId: first.contextId,
    found: got?.id === first.id,
    followUp: follow?.id === first.id && follow?.contextId === contextId,
  });
}
console.log(JSON.stringify({ mismatches, vectors: vectors.encode.length, tasks }));
