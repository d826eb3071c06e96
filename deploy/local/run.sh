#!/usr/bin/env bash
# Sets everything up, starts the whole stack and plays a short demo quiz with curl, then prints
# the URLs and commands to play along. Supervised: a crashed process restarts by itself.
# Check it with deploy/local/status.sh, stop it with deploy/local/down.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"

case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# //'; exit 0 ;;
esac

"$here/up.sh"

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
post() { # path, token or "", json → prints the response body; fails on an HTTP error
  local auth=()
  [ -n "$2" ] && auth=(-H "Authorization: Bearer $2")
  curl -sS --max-time 15 --fail-with-body -X POST "$PODIUM_URL$1" -H 'Content-Type: application/json' "${auth[@]}" -d "$3"
}

say "1. A host creates a quiz"
quiz=$(post /v1/quizzes "" '{
  "title": "Podium demo",
  "questions": [
    {"text": "Which planet is largest?", "choices": ["Mars", "Jupiter", "Venus"], "correct_choice": 1, "time_limit_seconds": 120},
    {"text": "How many sides has a hexagon?", "choices": ["5", "6", "8"], "correct_choice": 1, "time_limit_seconds": 120}
  ]}')
echo "$quiz" | jq 'del(.host_token)'
QUIZ=$(jq -r .quiz_id <<<"$quiz"); CODE=$(jq -r .join_code <<<"$quiz"); HOST=$(jq -r .host_token <<<"$quiz")

say "2. Ada and Grace join with code $CODE"
ada=$(post /v1/join "" "{\"join_code\": \"$CODE\", \"name\": \"Ada\"}")
grace=$(post /v1/join "" "{\"join_code\": \"$CODE\", \"name\": \"Grace\"}")
jq -c 'del(.player_token)' <<<"$ada"; jq -c 'del(.player_token)' <<<"$grace"
ADA=$(jq -r .player_token <<<"$ada"); GRACE=$(jq -r .player_token <<<"$grace")

# A dashboard follows the quiz over Server-Sent Events from here on.
stream="$PODIUM_HOME/demo-stream.txt"
curl -sS -N --max-time 20 "$PODIUM_URL/v1/quizzes/$QUIZ/events" >"$stream" 2>/dev/null &
dashboard=$!

say "3. The host starts question 1"
post "/v1/quizzes/$QUIZ/questions/1/start" "$HOST" '{}' | jq -c .

say "4. Ada answers Jupiter (right), Grace answers Mars (wrong)"
post "/v1/quizzes/$QUIZ/answers" "$ADA" '{"question": 1, "choice": 1}' | jq -c .
post "/v1/quizzes/$QUIZ/answers" "$GRACE" '{"question": 1, "choice": 0}' | jq -c .

say "5. The leaderboard moves"
for _ in $(seq 1 50); do
  board=$(curl -sS --max-time 5 "$PODIUM_URL/v1/quizzes/$QUIZ/leaderboard?limit=10")
  [ "$(jq '.entries | length' <<<"$board")" -ge 2 ] && break
  sleep 0.1
done
jq . <<<"$board"

say "6. The quiz state: question 1 is open, its answer hidden"
curl -sS --max-time 5 "$PODIUM_URL/v1/quizzes/$QUIZ" | jq -c '{status, player_count, current: (.current | {number, text, choices, remaining_ms})}'

say "7. What the dashboard's SSE stream received"
for _ in $(seq 1 30); do
  grep -q '^event: leaderboard' "$stream" && break
  sleep 0.1
done
kill "$dashboard" 2>/dev/null || true
# One line per event: its name, and its id when it has one (a lobby has none).
awk '/^event:/ {e = $0} /^id:/ {i = $0} /^$/ {if (e != "") print "  " e (i != "" ? "\t" i : ""); e = ""; i = ""}' "$stream"

cat > "$PODIUM_HOME/demo.env" <<ENV
export QUIZ=$QUIZ CODE=$CODE HOST=$HOST
export PODIUM=$PODIUM_URL
ENV

say "Your turn. Question 1 stays open for two minutes."
cat <<TXT
  source $PODIUM_HOME/demo.env

  # join (keep the player_token)
  curl -s -X POST \$PODIUM/v1/join -H 'Content-Type: application/json' -d '{"join_code": "$CODE", "name": "You"}'
  TOKEN=...

  # answer question 1 (choices: 0 Mars, 1 Jupiter, 2 Venus)
  curl -s -X POST \$PODIUM/v1/quizzes/\$QUIZ/answers -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"question": 1, "choice": 1}'

  # the leaderboard, and one player's points and rank
  curl -s "\$PODIUM/v1/quizzes/\$QUIZ/leaderboard?limit=10"
  curl -s "\$PODIUM/v1/quizzes/\$QUIZ/players/<player_id>"

  # follow the quiz live, as a dashboard does (Ctrl-C to stop)
  curl -N "\$PODIUM/v1/quizzes/\$QUIZ/events"

  # as the host: next question, then finish
  curl -s -X POST \$PODIUM/v1/quizzes/\$QUIZ/questions/2/start -H "Authorization: Bearer \$HOST"
  curl -s -X POST \$PODIUM/v1/quizzes/\$QUIZ/finish -H "Authorization: Bearer \$HOST"

  Podium, for every client: $PODIUM_URL  (nginx; behind it the command API $PODIUM_COMMAND_URL
  and the query API $PODIUM_QUERY_URL)
TXT

say "Or play in a browser"
cat <<TXT
  Host console (this quiz; the key stays in your browser): $PODIUM_URL/#/host/$QUIZ?code=$CODE&key=$HOST
  Big screen:                                              $PODIUM_URL/#/screen/$QUIZ?code=$CODE
  Player join link (open it on a phone, or a second tab):  $PODIUM_URL/#/join/$CODE
  A new quiz of your own:                                  $PODIUM_URL/#/host
  Logs: $PODIUM_HOME/logs    Status: deploy/local/status.sh    Stop: deploy/local/down.sh
TXT
