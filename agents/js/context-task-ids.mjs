// Task ids that carry their A2A contextId (format c1, as read by the
// a2a-affinity core, crates/core/src/task_id.rs), for @a2a-js/sdk agents.
//
// @a2a-js/sdk 1.3 has no task id hook: DefaultRequestHandler makes a new
// task's id with crypto.randomUUID() inside its _createRequestContext. The
// smallest way in is a subclass that overrides that method and, for a
// message that names no task, rebuilds the RequestContext with a task id
// that carries the resolved contextId. _createRequestContext is declared
// private in the SDK's TypeScript types, so TypeScript code needs a cast;
// check the override when upgrading the SDK.
//
//   import { DefaultRequestHandler, RequestContext } from '@a2a-js/sdk/server';
//   import { withContextTaskIds } from './context-task-ids.mjs';
//   const Handler = withContextTaskIds(DefaultRequestHandler, RequestContext);
//   const handler = new Handler(agentCard, taskStore, executor);

import { randomBytes } from 'node:crypto';

export const PREFIX = 'c1.';
// The gateway's default max_value_bytes: a longer id is not read.
export const MAX_LENGTH = 256;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const B64 = /^[A-Za-z0-9_-]*$/;

const b64 = (bytes) => Buffer.from(bytes).toString('base64url');

function unb64(text) {
  if (!B64.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  // Unused bits of the last character must be zero: one text, one reading.
  return b64(bytes) === text ? bytes : null;
}

function fnv1a(bytes) {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  const out = Buffer.alloc(4);
  out.writeUInt32BE(h);
  return out;
}

/** The task id for a task of `contextId` (16 random bytes unless given). */
export function encodeTaskId(contextId, random = randomBytes(16)) {
  if (typeof contextId !== 'string' || contextId === '') {
    throw new TypeError('contextId must be a non-empty string');
  }
  const body = UUID.test(contextId)
    ? 'u' + b64(Buffer.from(contextId.replaceAll('-', ''), 'hex'))
    : 's' + b64(Buffer.from(contextId, 'utf8'));
  const signed = `${PREFIX}${body}.${b64(random)}`;
  return `${signed}.${b64(fnv1a(Buffer.from(signed, 'ascii')))}`;
}

/** The contextId `taskId` carries, or null for any other id. */
export function decodeTaskId(taskId) {
  if (typeof taskId !== 'string' || !taskId.startsWith(PREFIX)) return null;
  const parts = taskId.slice(PREFIX.length).split('.');
  if (parts.length !== 3) return null;
  const [body, random, check] = parts;
  const signed = taskId.slice(0, taskId.lastIndexOf('.'));
  const sum = check.length === 6 ? unb64(check) : null;
  if (!sum || !sum.equals(fnv1a(Buffer.from(signed, 'utf8')))) return null;
  if (random.length !== 22 || !unb64(random)) return null;
  const data = unb64(body.slice(1));
  if (!data) return null;
  if (body[0] === 'u' && body.length === 23) {
    const h = data.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  if (body[0] === 's') {
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(data);
      return text || null;
    } catch {
      return null;
    }
  }
  return null;
}

/** A DefaultRequestHandler subclass whose new tasks get ids carrying their
 * contextId (a plain UUID when the id would pass `maxLength`). */
export function withContextTaskIds(DefaultRequestHandler, RequestContext, maxLength = MAX_LENGTH) {
  return class ContextTaskIdRequestHandler extends DefaultRequestHandler {
    async _createRequestContext(request, context) {
      const made = await super._createRequestContext(request, context);
      if (request.message?.taskId || !made.contextId) return made;
      const taskId = encodeTaskId(made.contextId);
      if (taskId.length > maxLength) return made;
      const message = { ...made.userMessage, taskId };
      return new RequestContext(
        { ...made.request, message },
        taskId,
        made.contextId,
        made.context,
        made.task,
        made.referenceTasks,
      );
    }
  };
}
