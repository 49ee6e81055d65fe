#!/usr/bin/env bash
# Brings the sandbox up, holds real multi-turn conversations with the agents
# through Envoy, checks every answer, and takes the sandbox down again.
#
#   envoy/sandbox/verify.sh                      # docker compose up, check, down
#   envoy/sandbox/verify.sh --shell dynamic-module   # the same with the dynamic module
#   envoy/sandbox/verify.sh --shell ext-proc     # ... with the ext_proc server
#   SANDBOX_NO_COMPOSE=1 ENVOY_URL=http://127.0.0.1:10000 ADMIN_URL=http://127.0.0.1:9901 \
#     envoy/sandbox/verify.sh                    # check an Envoy that is already running
#                                                # (ext-proc: METRICS_URL, the server's)
#
# Each conversation starts with no contextId (the filter mints one into the
# message and the agent adopts it), then sends two follow-ups carrying that
# contextId over two other bindings (REST 1.0, JSON-RPC 0.3). The agent answers
# "<replica>: turn <n> of context ...", so an answer proves both where the turn
# landed and that the replica holds the earlier turns. Needs curl and python3.
set -euo pipefail
cd "$(dirname "$0")"

ENVOY_URL=${ENVOY_URL:-http://127.0.0.1:10000}
ADMIN_URL=${ADMIN_URL:-http://127.0.0.1:9901}
METRICS_URL=${METRICS_URL:-http://127.0.0.1:9090}
CONVERSATIONS=${CONVERSATIONS:-12}

say() { printf '==> %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Which shell runs the filter: the Wasm filter (docker-compose.yaml alone),
# the dynamic module or the ext_proc server (compose.<shell>.yaml on top).
shell=wasm
while [ $# -gt 0 ]; do
  case "$1" in
    --shell) [ $# -ge 2 ] || fail "--shell needs a value"; shell=$2; shift 2 ;;
    --shell=*) shell=${1#--shell=}; shift ;;
    *) fail "unknown argument: $1 (usage: verify.sh [--shell wasm|dynamic-module|ext-proc])" ;;
  esac
done
case "$shell" in
  wasm) artifact=../../target/wasm32-wasip1/release/a2a_affinity.wasm ;;
  dynamic-module) artifact=../../target/release-native/liba2a_affinity_dynamic.so ;;
  ext-proc) artifact=../../target/release-native/a2a-affinity-ext-proc ;;
  *) fail "--shell $shell: expected wasm, dynamic-module or ext-proc" ;;
esac

if [ -z "${SANDBOX_NO_COMPOSE:-}" ]; then
  [ -f "$artifact" ] || fail "build the filter first: scripts/build.sh (no $artifact)"
  if [ "$shell" != wasm ]; then
    export COMPOSE_FILE="docker-compose.yaml:compose.$shell.yaml"
  fi
  say "docker compose up, $shell (the replicas install a2a-sdk on first start)"
  docker compose up -d --wait
  trap 'say "docker compose down"; docker compose down' EXIT
fi

say "waiting for Envoy at $ADMIN_URL/ready"
for _ in $(seq 1 120); do
  curl -sf "$ADMIN_URL/ready" >/dev/null && break
  sleep 1
done
curl -sf "$ADMIN_URL/ready" >/dev/null || fail "Envoy is not ready"

# POST a body with an A2A-Version, print "<contextId> <answer text>" from the
# task in the answer (1.0: result.task / task; 0.3: result).
turn() { # a2a-version path body
  local answer
  answer=$(curl -sS --fail-with-body -H 'content-type: application/json' \
    -H "a2a-version: $1" --data-binary "$3" "$ENVOY_URL$2") || fail "POST $2 answered: $answer"
  printf '%s' "$answer" | python3 -c '
import json, sys
raw = sys.stdin.read()
try:
    doc = json.loads(raw)
    task = doc.get("result", doc)
    task = task.get("task", task)
    print(task["contextId"], task["status"]["message"]["parts"][0]["text"])
except (ValueError, KeyError, IndexError, TypeError, AttributeError):
    sys.exit("FAIL: unexpected answer: " + raw[:500])'
}

declare -A conversations_on
for i in $(seq 1 "$CONVERSATIONS"); do
  read -r ctx text < <(turn 1.0 / '{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":
    {"messageId":"m-'"$i"'-1","role":"ROLE_USER","parts":[{"text":"hello"}]}}}')
  replica=${text%%:*}
  [[ $text == "$replica: turn 1 of context"* ]] || fail "conversation $i turn 1: $text"

  read -r ctx2 text < <(turn 1.0 /message:send '{"message":{"messageId":"m-'"$i"'-2","contextId":"'"$ctx"'",
    "role":"ROLE_USER","parts":[{"text":"and again"}]}}')
  [ "$ctx2" = "$ctx" ] || fail "conversation $i turn 2 changed context: $ctx -> $ctx2"
  [[ $text == "$replica: turn 2 of context"* ]] \
    || fail "conversation $i turn 2 expected $replica, turn 2; got: $text"

  read -r ctx3 text < <(turn 0.3 / '{"jsonrpc":"2.0","id":3,"method":"message/send","params":{"message":
    {"kind":"message","messageId":"m-'"$i"'-3","contextId":"'"$ctx"'","role":"user",
     "parts":[{"kind":"text","text":"last one"}]}}}')
  [ "$ctx3" = "$ctx" ] || fail "conversation $i turn 3 changed context: $ctx -> $ctx3"
  [[ $text == "$replica: turn 3 of context"* ]] \
    || fail "conversation $i turn 3 expected $replica, turn 3; got: $text"

  conversations_on[$replica]=$(( ${conversations_on[$replica]:-0} + 1 ))
  printf '  conversation %2d  context %s  3 turns on %s\n' "$i" "$ctx" "$replica"
done

spread=$(for r in "${!conversations_on[@]}"; do printf '%s=%s ' "$r" "${conversations_on[$r]}"; done)
say "conversations per replica: $spread"
# With 12 random contexts, all on one replica has a chance of 3 in 3^12.
[ "${#conversations_on[@]}" -ge 2 ] || fail "every conversation landed on one replica: $spread"

# The Envoy shells count in Envoy's /stats (the dynamic module's under
# dynamicmodulescustom.); the ext_proc server in its own Prometheus text.
if [ "$shell" = ext-proc ]; then
  stats=$(curl -sf "$METRICS_URL/metrics") || fail "no metrics at $METRICS_URL/metrics"
  counter() { printf '%s\n' "$stats" | sed -n "s/^a2a_affinity_$1_total //p"; }
else
  stats=$(curl -sf "$ADMIN_URL/stats?filter=a2a_affinity") || fail "no stats at $ADMIN_URL/stats"
  counter() { printf '%s\n' "$stats" | sed -n "s/^\(.*\.\)\{0,1\}a2a_affinity\.$1: //p"; }
fi
minted=$(counter minted); found=$(counter context_found)
say "filter counters: minted=${minted:-none} context_found=${found:-none}"
[ "${minted:-0}" -ge "$CONVERSATIONS" ] || fail "expected >= $CONVERSATIONS minted contextIds"
[ "${found:-0}" -ge $(( 2 * CONVERSATIONS )) ] || fail "expected >= $(( 2 * CONVERSATIONS )) contextIds found"
say "OK: $CONVERSATIONS conversations, every turn on its conversation's replica with its history"
