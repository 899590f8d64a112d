#!/usr/bin/env bash
# Copies the Kafka broker, Kafka Connect and Debezium jars pinned in infra/jvm/pom.xml into
# infra/jvm/target/lib (Maven keeps its download cache in ~/.m2). Tests and the local
# production-mode run only read that folder, so nothing is downloaded at test time.
# Idempotent: returns at once when the folder was filled from the same pom.xml.
set -euo pipefail
cd "$(dirname "$0")"

lib=target/lib
stamp=$lib/.pom.sha256
want=$(sha256sum pom.xml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need_apt[*]} ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "error: missing ${need_apt[*]} (Java 17+ and Maven fetch and run Kafka and Debezium)." >&2
    echo "       Debian: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi

echo "fetching Kafka, Kafka Connect and Debezium jars with Maven ..." >&2
rm -rf "$lib"
mkdir -p target
if ! mvn -B -q dependency:copy-dependencies >target/mvn.log 2>&1; then
  tail -40 target/mvn.log >&2
  echo "error: Maven could not resolve infra/jvm/pom.xml (full log: infra/jvm/target/mvn.log)" >&2
  exit 1
fi
rm -f target/mvn.log
echo "$want" >"$stamp"
echo "jars in infra/jvm/$lib ($(ls "$lib" | wc -l) files)" >&2
