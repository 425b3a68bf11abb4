#!/bin/bash
# One-off jobs of docker-compose.yml, run in the Elasticsearch image (it has certutil and curl).
#
#   bootstrap.sh certs     a CA and a certificate for `elasticsearch` (+ localhost) into /certs;
#                          kept when present, so a restart never changes the CA clients trust
#   bootstrap.sh security  once Elasticsearch answers: the kibana_system password, the roles
#                          (/roles/*.json), and API keys for the shipper and Logstash into /keys
#
# Secrets come from the environment (.env.local, see .env.example) and never reach the output or
# a command line: curl reads the password from a private config file.
set -euo pipefail

ES_URL="${ES_URL:-https://elasticsearch:9200}"
CA=/certs/ca/ca.crt
ES_HOME=/usr/share/elasticsearch

fail() { echo "bootstrap: $*" >&2; exit 1; }

extract() {  # extract ZIP DIR: certutil writes zips; the image may lack unzip, its JDK has jar
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$1" -d "$2"
  else
    (cd "$2" && "$ES_HOME/jdk/bin/jar" xf "$1")
  fi
}

certs() {
  if [ -f /certs/elasticsearch/elasticsearch.crt ]; then
    echo "certificates already in /certs; kept"
    return
  fi
  local work
  work="$(mktemp -d)"
  "$ES_HOME/bin/elasticsearch-certutil" ca --silent --pem --days 1095 --out "$work/ca.zip"
  extract "$work/ca.zip" /certs
  cat >"$work/instances.yml" <<'YAML'
instances:
  - name: elasticsearch
    dns: [elasticsearch, localhost]
    ip: [127.0.0.1]
YAML
  "$ES_HOME/bin/elasticsearch-certutil" cert --silent --pem --days 1095 \
    --in "$work/instances.yml" --ca-cert /certs/ca/ca.crt --ca-key /certs/ca/ca.key \
    --out "$work/certs.zip"
  extract "$work/certs.zip" /certs
  rm -rf "$work"
  # Elasticsearch (uid 1000) reads its key; every client only needs the CA certificate.
  chown -R 1000:0 /certs
  find /certs -type d -exec chmod 755 {} +
  find /certs -type f -name '*.crt' -exec chmod 644 {} +
  find /certs -type f -name '*.key' -exec chmod 640 {} +
  echo "certificates written to /certs (CA: ca/ca.crt)"
}

check_password() {  # NAME VALUE: the values go into JSON bodies and URLs, so keep them plain
  case "$2" in
    "" ) fail "$1 is not set; copy .env.example to .env.local and set it" ;;
    *[!A-Za-z0-9_-]* ) fail "$1 may hold only letters, digits, '-' and '_'; choose another value" ;;
  esac
  [ "${#2}" -ge 12 ] || fail "$1 is shorter than 12 characters; choose a longer value"
}

CURL_CONFIG=""
es() {  # es METHOD PATH [BODY_FILE] -> prints the body; fails naming the request on a non-2xx
  local method="$1" path="$2" body="${3:-}" out code
  out="$(mktemp)"
  local args=(-sS -K "$CURL_CONFIG" --cacert "$CA" -X "$method" -o "$out" -w '%{http_code}'
              -H 'Content-Type: application/json')
  [ -n "$body" ] && args+=(--data-binary "@$body")
  code="$(curl "${args[@]}" "$ES_URL$path")" || { rm -f "$out"; fail "$method $path: no answer"; }
  if [ "${code:0:1}" != 2 ]; then
    # error bodies name the problem and never hold a credential
    echo "bootstrap: $method $path answered $code: $(head -c 2000 "$out")" >&2
    rm -f "$out"
    exit 1
  fi
  cat "$out"
  rm -f "$out"
}

json_field() {  # json_field NAME < compact JSON: the string value of a top-level field
  sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"
}

api_key() {  # api_key NAME ROLE_FILE FILE FORMAT OWNER: create unless FILE holds a working key
  local name="$1" role_file="$2" file="$3" format="$4" owner="$5" body answer encoded
  if [ -s "$file" ]; then
    encoded="$(cat "$file")"
    [ "$format" = id:key ] && encoded="$(printf '%s' "$encoded" | base64 | tr -d '\n')"
    if curl -sf --cacert "$CA" -H "Authorization: ApiKey $encoded" "$ES_URL/_security/_authenticate" \
        -o /dev/null; then
      echo "API key $name: the one in $file still works; kept"
      return
    fi
  fi
  body="$(mktemp)"
  printf '{"name":"%s","role_descriptors":{"%s":%s},"metadata":{"created_by":"docker-compose elastic-setup"}}' \
    "$name" "$(basename "$role_file" .json)" "$(tr -d '\n' <"$role_file")" >"$body"
  answer="$(es POST /_security/api_key "$body" | tr -d '\n')"
  rm -f "$body"
  umask 077
  if [ "$format" = id:key ]; then
    printf '%s:%s' "$(json_field id <<<"$answer")" "$(json_field api_key <<<"$answer")" >"$file"
  else
    json_field encoded <<<"$answer" | tr -d '\n' >"$file"
  fi
  [ -s "$file" ] || fail "creating API key $name returned no key"
  chown "$owner" "$file"
  chmod 400 "$file"
  echo "API key $name created (role $(basename "$role_file" .json)) into $file"
}

security() {
  check_password ELASTIC_PASSWORD "${ELASTIC_PASSWORD:-}"
  check_password KIBANA_SYSTEM_PASSWORD "${KIBANA_SYSTEM_PASSWORD:-}"
  CURL_CONFIG="$(mktemp)"
  chmod 600 "$CURL_CONFIG"
  printf 'user = "elastic:%s"\n' "$ELASTIC_PASSWORD" >"$CURL_CONFIG"
  trap 'rm -f "$CURL_CONFIG"' EXIT

  local body
  body="$(mktemp)"
  printf '{"password":"%s"}' "$KIBANA_SYSTEM_PASSWORD" >"$body"
  es POST /_security/user/kibana_system/_password "$body" >/dev/null
  rm -f "$body"
  echo "kibana_system password set"

  local role
  for role in /roles/*.json; do
    [ -e "$role" ] || fail "no role files in /roles (kibana/roles/ and docker/elastic/roles/)"
    es PUT "/_security/role/$(basename "$role" .json)" "$role" >/dev/null
    echo "role $(basename "$role" .json) created or updated"
  done
  [ -f /roles/mlops-writer.json ] || fail "/roles/mlops-writer.json is missing (kibana/roles/)"

  # The shipper reads the encoded form; Logstash's api_key option wants id:api_key.
  api_key mlops-shipper /roles/mlops-writer.json /keys/shipper.api-key encoded 10001
  api_key mlops-logstash /roles/mlops-logstash-writer.json /keys/logstash.api-key id:key 1000
}

case "${1:-}" in
  certs) certs ;;
  security) security ;;
  *) fail "usage: bootstrap.sh certs|security" ;;
esac
