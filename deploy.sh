#!/usr/bin/env bash
# Builds a release of dashboard-server from this checkout and installs it as a systemd service:
#   /opt/dashboard-server/releases/<version>-<timestamp>   one directory per release, with its own Node 24
#   /opt/dashboard-server/current                          symlink to the running release (switched atomically)
#   /opt/dashboard-server/previous                         symlink to the release before it (for --rollback)
#   /etc/dashboard-server/config.yaml                      the config (operator edits are never overwritten)
#   /etc/systemd/system/dashboard-server.service           the unit (replaced on every deploy; use drop-ins)
# then restarts the service, waits for /ready and rolls back to the previous release if it does not come up.
# Run it again to upgrade; it is idempotent. See docs/deploy.md.
set -euo pipefail
umask 022

readonly SERVICE=dashboard-server
readonly SERVICE_USER=dashboard
# Mirrors package.json "engines": {"node": ">=24"}.
readonly MIN_NODE_MAJOR=24
# The files of a release (test/ is not shipped; node_modules is installed fresh, production only).
readonly RELEASE_FILES=(src plugins routes proto scripts docs systemd config.yaml package.json package-lock.json README.md)

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=/
USE_SYSTEMCTL=1
DRY_RUN=0
KEEP=5
PORT=
READY_PATH=/ready
READY_URL=
READY_TIMEOUT=60
NODE_BIN=
ROLLBACK_ONLY=0

usage() {
  cat <<EOF
Usage: deploy.sh [options]

Builds a release of $SERVICE from the checkout holding this script (production dependencies and the Node 24
runtime), installs it under /opt/$SERVICE/releases, switches /opt/$SERVICE/current to it, installs the
systemd unit and, when missing, /etc/$SERVICE/config.yaml, restarts the service and waits until it is ready.
If it does not become ready in time, the previous release (and the files this deploy changed) come back.

Options:
  --root DIR             install into DIR instead of / (an image or a test tree); needs --no-systemctl, the
                         service user is not created and file owners are left as they are
  --no-systemctl         do not call systemctl (no daemon-reload, enable, restart); readiness is then only
                         checked when --ready-url is given
  --ready-url URL        the URL that must answer 200 after the switch
                         (default with systemctl: http://<server.host>:<server.port><ready-path>)
  --ready-path PATH      the path polled on the service's own port (default /ready; /health does not wait
                         for Redis)
  --ready-timeout SECS   how long to wait for it (default 60)
  --port PORT            the service's port, when it is not server.port of the installed config (e.g. set
                         in /etc/$SERVICE/env); used for the port check and the default ready URL
  --keep N               keep the N newest releases (default 5); the current and previous ones always stay
  --node PATH            the Node binary to ship in the release (default: the checkout's
                         node_modules/node/bin/node, installed by \`npm install\`); must be Node >= $MIN_NODE_MAJOR
  --rollback             switch back to the previous release (no build), restart and wait for it
  --dry-run              print what would be done and change nothing
  -h, --help             this help

Exit status: 0 deployed, 1 failed (rolled back when possible), 2 bad usage.
EOF
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'deploy.sh: warning: %s\n' "$*" >&2; }
die() {
  printf 'deploy.sh: error: %s\n' "$*" >&2
  exit 1
}
usage_error() {
  printf 'deploy.sh: %s (see --help)\n' "$*" >&2
  exit 2
}
# Runs a command that changes something, or prints it under --dry-run.
run() {
  if ((DRY_RUN)); then
    printf '    would run: %s\n' "${*@Q}"
  else
    "$@"
  fi
}

# Sets the options above from the command line; bad usage exits 2.
parse_args() {
  while (($# > 0)); do
    case $1 in
    --root | --ready-url | --ready-path | --ready-timeout | --port | --keep | --node)
      (($# >= 2)) || usage_error "$1 needs a value"
      case $1 in
      --root) ROOT=$2 ;;
      --ready-url) READY_URL=$2 ;;
      --ready-path) READY_PATH=$2 ;;
      --ready-timeout) READY_TIMEOUT=$2 ;;
      --port) PORT=$2 ;;
      --keep) KEEP=$2 ;;
      --node) NODE_BIN=$2 ;;
      esac
      shift 2
      ;;
    --no-systemctl) USE_SYSTEMCTL=0 && shift ;;
    --dry-run) DRY_RUN=1 && shift ;;
    --rollback) ROLLBACK_ONLY=1 && shift ;;
    -h | --help) usage && exit 0 ;;
    *) usage_error "unknown option: $1" ;;
    esac
  done
}

# Checks the option values and derives PREFIX from --root.
check_args() {
  [[ $KEEP =~ ^[1-9][0-9]*$ ]] || usage_error "--keep needs a number of at least 1, got '$KEEP'"
  [[ $READY_TIMEOUT =~ ^[1-9][0-9]*$ ]] || usage_error "--ready-timeout needs a number of seconds, got '$READY_TIMEOUT'"
  [[ -z $PORT || $PORT =~ ^[1-9][0-9]*$ && $PORT -le 65535 ]] || usage_error "--port needs a TCP port, got '$PORT'"
  [[ $READY_PATH == /* ]] || usage_error "--ready-path must start with /, got '$READY_PATH'"
  [[ $ROOT == /* ]] || ROOT="$PWD/$ROOT"
  PREFIX=${ROOT%/}
  if [[ -n $PREFIX ]] && ((USE_SYSTEMCTL)); then
    usage_error "--root installs into a tree the running systemd does not manage: add --no-systemctl"
  fi
}

# Where everything is installed, under PREFIX.
set_paths() {
  declare -gr APP_DIR=$PREFIX/opt/$SERVICE
  declare -gr RELEASES=$APP_DIR/releases
  declare -gr CURRENT=$APP_DIR/current
  declare -gr PREVIOUS=$APP_DIR/previous
  # A copy of the default config installed last time: an installed config that differs from it was edited.
  declare -gr LAST_DEFAULT=$APP_DIR/config.yaml.last-default
  declare -gr ETC=$PREFIX/etc/$SERVICE
  declare -gr CONFIG=$ETC/config.yaml
  declare -gr SECRET=$ETC/jwt-secret
  declare -gr ENV_FILE=$ETC/env
  declare -gr UNIT=$PREFIX/etc/systemd/system/$SERVICE.service
}

# --- state for cleanup and rollback ---------------------------------------------------------------------
BUILD_DIR=       # a release being built, removed on failure
STAGED=()        # temporary files to remove on exit
CHANGED=()       # files this deploy replaced or created, restored by a rollback: "path|backup-or-empty"
OLD_CURRENT=     # link target of current before the switch (releases/<name>), empty on a first install
OLD_PREVIOUS=    # link target of previous before the switch
NEW_RELEASE=     # the release directory being deployed

cleanup() {
  local file
  for file in "${STAGED[@]}"; do rm -f -- "$file"; done
  if [[ -n $BUILD_DIR && -d $BUILD_DIR ]]; then rm -rf -- "$BUILD_DIR"; fi
}

# --- helpers -------------------------------------------------------------------------------------------
# Replaces link $1 by a symlink to $2, atomically: a new link beside it, then rename(2) over the old one.
switch_link() {
  local link=$1 target=$2 tmp
  tmp="$(dirname "$link")/.$(basename "$link").$$"
  ln -sfn -- "$target" "$tmp"
  mv -T -- "$tmp" "$link"
}

# Installs file $1 as $2 with mode $3 (and group $4 if given), atomically, remembering the old content for a
# rollback. Returns 1 when $2 already had that content.
install_file() {
  local from=$1 dest=$2 mode=$3 group=${4:-} tmp backup=
  if [[ -f $dest ]] && cmp -s -- "$from" "$dest"; then return 1; fi
  tmp="$(dirname "$dest")/.$(basename "$dest").new.$$"
  STAGED+=("$tmp")
  cp -- "$from" "$tmp"
  chmod "$mode" "$tmp"
  if [[ -n $group ]]; then chown "root:$group" "$tmp"; fi
  if [[ -f $dest ]]; then
    backup="$(dirname "$dest")/.$(basename "$dest").rollback.$$"
    cp -p -- "$dest" "$backup"
  fi
  mv -f -- "$tmp" "$dest"
  CHANGED+=("$dest|$backup")
  return 0
}

# The environment the unit gives the service (without the variables systemd sets itself), for running the
# release's own code as the service would see the config: NODE_ENV, the credential path and the env file.
SERVICE_ENV=()
service_env() {
  SERVICE_ENV=(PATH=/usr/local/bin:/usr/bin:/bin NODE_ENV=production "DASHBOARD_AUTH__JWT__SECRET_FILE=$SECRET")
  [[ -f $ENV_FILE ]] || return 0
  local line key value
  # systemd's EnvironmentFile= syntax, the simple part of it: KEY=value lines, # comments, optional quotes.
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^[[:space:]]*(#|;|$) ]] && continue
    if [[ ! $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]]; then
      warn "$ENV_FILE: ignoring a line that is not KEY=value"
      continue
    fi
    key=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    if [[ $value =~ ^\"(.*)\"[[:space:]]*$ || $value =~ ^\'(.*)\'[[:space:]]*$ ]]; then value=${BASH_REMATCH[1]}; fi
    SERVICE_ENV+=("$key=$value")
  done <"$ENV_FILE"
}

# Runs the release's node ($1) with the service's environment only: the deploying shell's DASHBOARD_*
# variables must not make a config pass here that the service would read differently.
release_node() {
  local node=$1
  shift
  env -i "${SERVICE_ENV[@]}" "$node" "$@"
}

# The release's config loader: src/config/load.ts, or src/config.ts in a release from before the split.
config_loader() {
  if [[ -f $1/src/config/load.ts ]]; then printf '%s\n' "$1/src/config/load.ts"; else printf '%s\n' "$1/src/config.ts"; fi
}

# Prints "host port" as the service would listen, using the release's own config loader.
listen_address() {
  local release=$1 config=$2
  # shellcheck disable=SC2016 # JavaScript, not shell
  release_node "$release/bin/node" --no-warnings --input-type=module -e '
    const { pathToFileURL } = await import("node:url");
    const { loadConfig } = await import(pathToFileURL(process.argv[1]).href);
    const { server } = loadConfig({ path: process.argv[2], env: process.env });
    process.stdout.write(`${server.host} ${server.port}\n`);' "$(config_loader "$release")" "$config"
}

# Exits 0 when the port is free for the service's host (tries to listen on it, as the service will).
port_free() {
  local node=$1 host=$2 port=$3
  # shellcheck disable=SC2016 # JavaScript, not shell
  "$node" -e '
    const server = require("node:net").createServer();
    server.once("error", (error) => { process.stderr.write(`${error.code}\n`); process.exit(1); });
    server.listen(Number(process.argv[2]), process.argv[1], () => server.close(() => process.exit(0)));' \
    "$host" "$port"
}

LAST_ANSWER=
# Polls URL $2 with node $1 until it answers 200 or $3 seconds pass; LAST_ANSWER keeps the last answer.
wait_ready() {
  local node=$1 url=$2 timeout=$3 deadline
  deadline=$((SECONDS + timeout))
  LAST_ANSWER=
  while ((SECONDS < deadline)); do
    if ((USE_SYSTEMCTL)) && systemctl is-failed --quiet "$SERVICE"; then
      LAST_ANSWER="the unit failed (systemctl status $SERVICE)"
      return 1
    fi
    # shellcheck disable=SC2016 # JavaScript, not shell
    if LAST_ANSWER=$("$node" -e '
      fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then(
        async (res) => {
          const body = (await res.text()).slice(0, 200).replace(/\s+/g, " ");
          process.stdout.write(`HTTP ${res.status} ${body}`);
          process.exit(res.status === 200 ? 0 : 1);
        },
        (error) => {
          process.stdout.write(String(error.cause?.code ?? error.cause?.message ?? error.message));
          process.exit(1);
        },
      );' "$url" 2>&1); then
      return 0
    fi
    sleep 0.5
  done
  return 1
}

ready_url_for() {
  local release=$1 host port
  if [[ -n $READY_URL ]]; then
    printf '%s\n' "$READY_URL"
    return
  fi
  read -r host port < <(listen_address "$release" "$CONFIG") || true
  port=${PORT:-$port}
  [[ -n $port ]] || die "cannot read server.host and server.port from $CONFIG: pass --ready-url"
  case $host in
  0.0.0.0 | "" | localhost) host=127.0.0.1 ;;
  :: | ::0) host='[::1]' ;;
  *:*) host="[$host]" ;;
  esac
  printf 'http://%s:%s%s\n' "$host" "$port" "$READY_PATH"
}

restart_service() {
  systemctl daemon-reload
  systemctl reset-failed "$SERVICE" 2>/dev/null || true
  systemctl restart "$SERVICE"
}

show_journal() {
  if ((USE_SYSTEMCTL)) && command -v journalctl >/dev/null; then
    note "last lines of the service's log:" >&2
    journalctl -u "$SERVICE" -n 15 --no-pager -o cat 2>/dev/null | sed 's/^/      /' >&2 || true
  fi
}

release_name_of() { basename "$(readlink -- "$1")"; }

# --- steps, in the order main runs them ---------------------------------------------------------------
# Refuses what cannot work: installing into / without root, systemctl without systemd.
preflight() {
  if [[ -z $PREFIX ]] && ((!DRY_RUN)) && ((EUID != 0)); then
    die "installing into / needs root: run it with sudo, or use --root DIR (a prefix) or --dry-run"
  fi
  if ((USE_SYSTEMCTL)) && ! command -v systemctl >/dev/null; then
    die "systemctl not found: is this a systemd host? (--no-systemctl installs the files only)"
  fi
}

# --rollback: switches current back to previous (no build), restarts and waits; exits.
rollback_only() {
  local target url
  [[ -L $PREVIOUS && -d $PREVIOUS ]] || die "no previous release to roll back to ($PREVIOUS)"
  OLD_CURRENT=$(readlink -- "$CURRENT" 2>/dev/null || true)
  target=$(readlink -- "$PREVIOUS")
  say "rolling back: current -> $target (was ${OLD_CURRENT:-nothing})"
  if ((DRY_RUN)); then
    note "would switch $CURRENT to $target and $PREVIOUS to $OLD_CURRENT, then restart and wait"
    exit 0
  fi
  exec 9>"$APP_DIR/.deploy.lock"
  flock -n 9 || die "another deploy.sh is running on $APP_DIR"
  switch_link "$CURRENT" "$target"
  if [[ -n $OLD_CURRENT ]]; then switch_link "$PREVIOUS" "$OLD_CURRENT"; fi
  service_env
  if ((USE_SYSTEMCTL)); then
    restart_service
  elif [[ -z $READY_URL ]]; then
    say "switched; restart the service yourself (--no-systemctl)"
    exit 0
  fi
  url=$(ready_url_for "$CURRENT")
  if wait_ready "$CURRENT/bin/node" "$url" "$READY_TIMEOUT"; then
    say "rolled back to $target: $url answers 200"
    exit 0
  fi
  show_journal
  die "rolled back to $target, but $url did not answer 200 within ${READY_TIMEOUT}s (last: ${LAST_ANSWER:-no answer})"
}

# The checkout has what a release is made of, and npm to install its dependencies.
check_sources() {
  local file
  for file in "${RELEASE_FILES[@]}"; do
    [[ -e $SRC/$file ]] || die "$SRC/$file is missing: run deploy.sh from a dashboard-server checkout"
  done
  command -v npm >/dev/null || die "npm not found: it installs the release's production dependencies"
}

# NODE_BIN and NODE_VERSION: the runtime shipped in the release, Node >= MIN_NODE_MAJOR.
find_node() {
  local node_major
  if [[ -z $NODE_BIN ]]; then
    NODE_BIN=$SRC/node_modules/node/bin/node
    [[ -x $NODE_BIN ]] || die "no Node runtime at $NODE_BIN: run \`npm install\` in $SRC (the devDependency \`node\` brings Node $MIN_NODE_MAJOR), or pass --node PATH"
  fi
  [[ -x $NODE_BIN ]] || die "--node $NODE_BIN is not an executable file"
  NODE_BIN=$(readlink -f -- "$NODE_BIN") # the binary itself, not npm's symlink to it
  NODE_VERSION=$("$NODE_BIN" --version 2>/dev/null) || die "$NODE_BIN --version failed: not a Node binary?"
  node_major=${NODE_VERSION#v}
  node_major=${node_major%%.*}
  if [[ ! $node_major =~ ^[0-9]+$ ]] || ((node_major < MIN_NODE_MAJOR)); then
    die "Node $NODE_VERSION ($NODE_BIN) is too old: dashboard-server needs Node >= $MIN_NODE_MAJOR (type stripping, package.json engines)"
  fi
}

check_compiler() {
  # The release is compiled to JavaScript by the TypeScript compiler, a devDependency of the checkout.
  [[ -f $SRC/node_modules/typescript/package.json ]] ||
    die "no TypeScript compiler in $SRC/node_modules: run \`npm install\` in $SRC (it compiles the release to JavaScript)"
}

# NAME and NEW_RELEASE: <version>-<UTC timestamp>, unique under releases/.
name_release() {
  VERSION=$("$NODE_BIN" -p 'JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8")).version' "$SRC/package.json")
  [[ $VERSION =~ ^[0-9A-Za-z.+-]+$ ]] || die "package.json version '$VERSION' cannot name a release directory"
  STAMP=$(date -u +%Y%m%d%H%M%S)
  while [[ -e $RELEASES/$VERSION-$STAMP ]]; do # a second deploy within the same second
    sleep 1
    STAMP=$(date -u +%Y%m%d%H%M%S)
  done
  NAME=$VERSION-$STAMP
  NEW_RELEASE=$RELEASES/$NAME

  say "deploying $SERVICE $NAME from $SRC (Node $NODE_VERSION) into ${PREFIX:-/}"
  if ((DRY_RUN)); then
    note "(dry run: nothing is changed)"
  fi
}

check_secret() {
  local msg
  # The operator provides the secret (docs/deploy.md); without it the unit cannot start.
  if [[ ! -f $SECRET ]]; then
    msg="$SECRET is missing: put the login service's JWT secret there (one line, at least 32 bytes; root-only, mode 0600): the unit loads it as the credential jwt-secret"
    if ((DRY_RUN)); then warn "$msg"; else die "$msg"; fi
  elif [[ -n $(find "$SECRET" -perm /077 2>/dev/null) ]]; then
    warn "$SECRET is readable by others than its owner: chmod 0600 $SECRET"
  fi
  if [[ -f $ENV_FILE && -n $(find "$ENV_FILE" -perm /077 2>/dev/null) ]]; then
    warn "$ENV_FILE is readable by others than its owner: chmod 0600 $ENV_FILE"
  fi
}

# Only one deploy at a time.
take_lock() {
  if ((!DRY_RUN)); then
    mkdir -p -- "$RELEASES" "$ETC"
    exec 9>"$APP_DIR/.deploy.lock"
    flock -n 9 || die "another deploy.sh is running on $APP_DIR"
  fi
}

# --- build the release ---------------------------------------------------------------------------------
# Copies the release files and the runtime into BUILD_DIR.
copy_release_files() {
  local file
  for file in "${RELEASE_FILES[@]}"; do cp -R -- "$SRC/$file" "$BUILD_DIR/"; done
  # The runtime: 120 MB, so share the previous release's copy (a hard link) when it is the same binary.
  if [[ -f $CURRENT/bin/node ]] && cmp -s -- "$NODE_BIN" "$CURRENT/bin/node" &&
    ln -- "$(readlink -f -- "$CURRENT/bin/node")" "$BUILD_DIR/bin/node" 2>/dev/null; then
    note "bin/node: Node $NODE_VERSION, shared with the current release"
  else
    cp -- "$NODE_BIN" "$BUILD_DIR/bin/node"
    chmod 0755 "$BUILD_DIR/bin/node"
    note "bin/node: Node $NODE_VERSION, copied from $NODE_BIN"
  fi
}

install_dependencies() {
  # Same dependency tree as the current release (the lockfiles differ at most in the package's own version):
  # hard links to its node_modules are the whole tree, and npm is not run on them. It used to be, to find the tree
  # up to date: under load, in the deploy test run three at a time, it left releases with files missing
  # (@lukeed/ms/dist/index.js, json-schema-ref-resolver), which then could not start.
  if [[ -d $CURRENT/node_modules ]] && "$NODE_BIN" -e '
    const { readFileSync } = require("node:fs");
    const tree = (file) => {
      const lock = JSON.parse(readFileSync(file, "utf8"));
      delete lock.version;
      if (lock.packages?.[""]) delete lock.packages[""].version;
      return JSON.stringify(lock);
    };
    process.exit(tree(process.argv[1]) === tree(process.argv[2]) ? 0 : 1);' \
    "$SRC/package-lock.json" "$CURRENT/package-lock.json" 2>/dev/null; then
    cp -al -- "$(readlink -f -- "$CURRENT/node_modules")" "$BUILD_DIR/node_modules"
    # npm rewrites its hidden lockfile even when nothing changes: give the new release its own copy.
    rm -f -- "$BUILD_DIR/node_modules/.package-lock.json"
    cp -- "$CURRENT/node_modules/.package-lock.json" "$BUILD_DIR/node_modules/" 2>/dev/null || true
    note "node_modules: same lockfile as the current release, hard links to its files"
    return
  fi
  # Production dependencies from the lockfile, run by the release's own Node (first on PATH). `npm ci`
  # refuses this lockfile on machines whose registry lacks other platforms' optional packages; `npm install`
  # honours it. --ignore-scripts: nothing in the production tree needs an install script (msgpackr-extract
  # ships prebuilt binaries; protobufjs' postinstall only checks its CLI's peers), and none runs as root.
  (cd "$BUILD_DIR" && PATH="$BUILD_DIR/bin:$PATH" npm install --omit=dev --ignore-scripts --no-audit --no-fund \
    --prefer-offline --loglevel=error) || die "npm install --omit=dev failed in $BUILD_DIR"
}

compile_release() {
  # The unit runs src/server.js: without run-time type stripping the service starts with ~25 MB less RSS.
  # scripts/build.ts runs from the checkout, whose node_modules has the compiler (the release has none).
  "$BUILD_DIR/bin/node" --no-warnings "$SRC/scripts/build.ts" "$BUILD_DIR" >/dev/null ||
    die "compiling the release to JavaScript failed in $BUILD_DIR"
  # A release built before releases had JavaScript is what a rollback would switch back to: give it its own.
  if [[ -f $CURRENT/src/server.ts && ! -f $CURRENT/src/server.js ]]; then
    "$BUILD_DIR/bin/node" --no-warnings "$SRC/scripts/build.ts" "$(readlink -f -- "$CURRENT")" >/dev/null ||
      die "compiling the current release to JavaScript (for a rollback) failed"
    note "compiled the current release to JavaScript too, so that a rollback to it starts"
  fi
}

# BUILD_DIR/RELEASE: what was built, from what.
write_release_info() {
  {
    printf 'release=%s\nversion=%s\nnode=%s\nbuilt=%s\nsource=%s\n' \
      "$NAME" "$VERSION" "$NODE_VERSION" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SRC"
    # safe.directory: under sudo, git otherwise refuses a checkout owned by another user.
    if git -c "safe.directory=$SRC" -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
      printf 'commit=%s%s\n' "$(git -c "safe.directory=$SRC" -C "$SRC" rev-parse HEAD)" \
        "$(git -c "safe.directory=$SRC" -C "$SRC" diff --quiet HEAD -- 2>/dev/null ||
          echo ' (with uncommitted changes)')"
    fi
  } >"$BUILD_DIR/RELEASE"
}

# Builds NEW_RELEASE in a hidden directory and renames it into place (or says what it would do).
build_release() {
  say "building release $NEW_RELEASE"
  if ((DRY_RUN)); then
    note "would copy ${RELEASE_FILES[*]} into it"
    note "would copy $NODE_BIN as bin/node"
    note "would run npm install --omit=dev --ignore-scripts there (from the lockfile)"
    note "would compile src, plugins, routes and scripts to JavaScript beside them (scripts/build.ts: tsc)"
    return
  fi
  BUILD_DIR=$RELEASES/.build-$NAME
  rm -rf -- "$BUILD_DIR"
  mkdir -p -- "$BUILD_DIR/bin"
  copy_release_files
  install_dependencies
  compile_release
  write_release_info
  # Readable by the service user, writable by root only. Files shared with the current release (hard links)
  # already are, and are left alone.
  find "$BUILD_DIR" \( -type d -o -type f -links 1 \) -exec chmod u+rwX,go+rX,go-w {} +
  mv -T -- "$BUILD_DIR" "$NEW_RELEASE"
  BUILD_DIR=$NEW_RELEASE # removed on failure until it is switched to
}

# --- config ---------------------------------------------------------------------------------------------
# The default config is the checkout's config.yaml with a header, and auth.jwt.secret_file pointing at
# jwt-secret beside it (relative paths resolve against the config's folder): `--check-config` run by hand
# as root then reads the same secret the unit hands the service as a credential.
default_config() {
  cat <<EOF
# $SERVICE configuration, installed by deploy.sh. Every key is documented in docs/configuration.md.
# Your edits are kept: when a release ships a different default, deploy.sh writes it beside this file as
# config.yaml.new for you to merge. Under systemd, auth.jwt.secret_file is overridden by the unit
# (DASHBOARD_AUTH__JWT__SECRET_FILE=%d/jwt-secret: the credential loaded from /etc/$SERVICE/jwt-secret).
#
EOF
  sed -E 's#^([[:space:]]*secret_file:[[:space:]]*)\.dev/jwt-secret[[:space:]]*$#\1jwt-secret#' "$SRC/config.yaml"
}

# STAGED_DEFAULT: this release's default config, in a temporary file.
stage_default_config() {
  grep -Eq '^[[:space:]]*secret_file:[[:space:]]*\.dev/jwt-secret[[:space:]]*$' "$SRC/config.yaml" ||
    warn "config.yaml has no 'secret_file: .dev/jwt-secret' line to point at /etc/$SERVICE/jwt-secret"

  STAGED_DEFAULT=$(mktemp "${TMPDIR:-/tmp}/$SERVICE-config.XXXXXX")
  STAGED+=("$STAGED_DEFAULT")
  default_config >"$STAGED_DEFAULT"
}

decide_config() {
  local would
  # What to do with /etc/.../config.yaml: install (none yet), update (unedited, new default), same, keep
  # (edited, default unchanged) or beside (edited and a new default: write config.yaml.new).
  if [[ ! -f $CONFIG ]]; then
    CONFIG_ACTION=install
  elif cmp -s "$CONFIG" "$STAGED_DEFAULT"; then
    CONFIG_ACTION=same
  elif [[ -f $LAST_DEFAULT ]] && cmp -s "$CONFIG" "$LAST_DEFAULT"; then
    CONFIG_ACTION=update
  elif [[ -f $LAST_DEFAULT ]] && cmp -s "$LAST_DEFAULT" "$STAGED_DEFAULT"; then
    CONFIG_ACTION=keep
  else
    CONFIG_ACTION=beside
  fi

  if [[ $CONFIG_ACTION == install || $CONFIG_ACTION == update ]]; then
    CHECKED_CONFIG=$STAGED_DEFAULT
    CHECKED_NAME="this release's default config"
  else
    CHECKED_CONFIG=$CONFIG
    CHECKED_NAME=$CONFIG
  fi
  would=
  ((DRY_RUN)) && would="(would) "
  case $CONFIG_ACTION in
  install) say "config: ${would}installing the default as $CONFIG" ;;
  update) say "config: $CONFIG was not edited: ${would}updating it to this release's default" ;;
  same) say "config: $CONFIG is this release's default" ;;
  keep) say "config: keeping your edited $CONFIG (the default did not change)" ;;
  beside) say "config: keeping your edited $CONFIG; ${would}writing this release's default beside it as $CONFIG.new" ;;
  esac
}

# Runs the release's own --check-config on the config the service will read.
check_config() {
  local check_output
  service_env
  if ((DRY_RUN)); then
    say "(would) check $CHECKED_NAME with the release's own checker (server.js --check-config)"
  else
    say "checking $CHECKED_NAME with the release's own checker"
    if ! check_output=$(release_node "$NEW_RELEASE/bin/node" --no-warnings "$NEW_RELEASE/src/server.js" \
      --check-config --config "$CHECKED_CONFIG" 2>&1); then
      die "${check_output//$STAGED_DEFAULT/$CHECKED_NAME} (checking $CHECKED_NAME; nothing was switched)"
    fi
    note "${check_output//$STAGED_DEFAULT/$CHECKED_NAME}"
  fi
  if grep -q 'http://localhost:5173' "$CHECKED_CONFIG"; then
    warn "websocket.allowed_origins in $CONFIG still lists the local development origins: replace them with your dashboard's origin(s)"
  fi
}

check_port() {
  local host port in_use
  # A fresh start must find its port free; an upgrade restarts the service that holds it.
  if ((USE_SYSTEMCTL && !DRY_RUN)) && ! systemctl is-active --quiet "$SERVICE"; then
    read -r host port < <(listen_address "$NEW_RELEASE" "$CHECKED_CONFIG") || true
    port=${PORT:-$port}
    [[ -n $port ]] || die "cannot read server.host and server.port from $CHECKED_NAME"
    if ! in_use=$(port_free "$NEW_RELEASE/bin/node" "$host" "$port" 2>&1); then
      die "port $port on $host is not free ($in_use) and $SERVICE is not running: what holds it? (ss -ltnp 'sport = :$port')"
    fi
  fi
}

# --- install ----------------------------------------------------------------------------------------------
# The service user (not under --root); HAS_GROUP: the group that reads the config.
create_user() {
  HAS_GROUP=
  if [[ -z $PREFIX ]]; then
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
      say "creating the system user $SERVICE_USER"
      run useradd --system --user-group --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin --comment "$SERVICE" "$SERVICE_USER"
    fi
    HAS_GROUP=$SERVICE_USER
  fi
}

# Installs the config and the unit, then switches current (and previous) to the new release.
install_and_switch() {
  if ((DRY_RUN)); then
    say "(would) install $UNIT and the config as above, and switch $CURRENT to releases/$NAME"
  else
    # The service reads its config through its group; nothing else on the host needs to.
    chmod 0750 "$ETC"
    if [[ -n $HAS_GROUP ]]; then chown "root:$HAS_GROUP" "$ETC"; fi
    case $CONFIG_ACTION in
    install | update) install_file "$STAGED_DEFAULT" "$CONFIG" 0640 "$HAS_GROUP" || true ;;
    beside)
      install_file "$STAGED_DEFAULT" "$CONFIG.new" 0640 "$HAS_GROUP" || true
      note "compare and merge: diff -u $CONFIG $CONFIG.new"
      ;;
    esac
    install_file "$STAGED_DEFAULT" "$LAST_DEFAULT" 0644 || true

    mkdir -p -- "$(dirname "$UNIT")"
    if install_file "$NEW_RELEASE/systemd/$SERVICE.service" "$UNIT" 0644; then say "installed $UNIT"; fi

    # --- switch ---------------------------------------------------------------------------------------------
    OLD_CURRENT=$(readlink -- "$CURRENT" 2>/dev/null || true)
    OLD_PREVIOUS=$(readlink -- "$PREVIOUS" 2>/dev/null || true)
    say "switching $CURRENT to releases/$NAME"
    switch_link "$CURRENT" "releases/$NAME"
    BUILD_DIR=
    if [[ -n $OLD_CURRENT ]]; then switch_link "$PREVIOUS" "$OLD_CURRENT"; fi
  fi
}

# Puts back the previous release and every file this deploy changed, then deletes the failed release.
rollback() {
  local entry dest backup
  say "rolling back to ${OLD_CURRENT:-nothing}"
  for entry in "${CHANGED[@]}"; do
    dest=${entry%%|*}
    backup=${entry#*|}
    if [[ -n $backup ]]; then mv -f -- "$backup" "$dest"; else rm -f -- "$dest"; fi
  done
  switch_link "$CURRENT" "$OLD_CURRENT"
  if [[ -n $OLD_PREVIOUS ]]; then switch_link "$PREVIOUS" "$OLD_PREVIOUS"; else rm -f -- "$PREVIOUS"; fi
  rm -rf -- "$NEW_RELEASE"
  note "removed the failed release $NAME"
}

fail_after_switch() {
  local reason=$1
  show_journal
  if [[ -z $OLD_CURRENT ]]; then
    die "$reason. This was the first install, there is nothing to roll back to: releases/$NAME stays current (journalctl -u $SERVICE)"
  fi
  rollback
  if ((USE_SYSTEMCTL)); then
    restart_service || true
    local url
    url=$(ready_url_for "$CURRENT")
    if wait_ready "$CURRENT/bin/node" "$url" "$READY_TIMEOUT"; then
      note "$(release_name_of "$CURRENT") is back and ready"
    else
      warn "$(release_name_of "$CURRENT") is back but not ready either: ${LAST_ANSWER:-no answer}"
    fi
  else
    note "restart $SERVICE yourself (--no-systemctl) so that it runs $(release_name_of "$CURRENT") again"
  fi
  die "$reason: rolled back to $(release_name_of "$CURRENT")"
}

# --- restart and wait ---------------------------------------------------------------------------------------
# Restarts the service (systemctl) and waits for the ready URL; rolls back if it does not answer 200.
restart_and_wait() {
  local url
  if ((DRY_RUN)); then
    if ((USE_SYSTEMCTL)); then
      run systemctl daemon-reload
      run systemctl enable "$SERVICE"
      run systemctl restart "$SERVICE"
    fi
    if ((USE_SYSTEMCTL)) || [[ -n $READY_URL ]]; then
      say "(would) wait up to ${READY_TIMEOUT}s for ${READY_URL:-the service at $READY_PATH} to answer 200, and roll back if not"
    fi
  else
    if ((USE_SYSTEMCTL)); then
      say "restarting $SERVICE"
      systemctl daemon-reload
      systemctl enable --quiet "$SERVICE"
      restart_service || fail_after_switch "systemctl restart $SERVICE failed"
    fi
    if ((USE_SYSTEMCTL)) || [[ -n $READY_URL ]]; then
      url=$(ready_url_for "$NEW_RELEASE")
      say "waiting up to ${READY_TIMEOUT}s for $url"
      if ! wait_ready "$NEW_RELEASE/bin/node" "$url" "$READY_TIMEOUT"; then
        fail_after_switch "$url did not answer 200 within ${READY_TIMEOUT}s (last: ${LAST_ANSWER:-no answer})"
      fi
      note "$LAST_ANSWER"
    else
      say "not restarted (--no-systemctl): start or restart $SERVICE yourself"
    fi
  fi
}

# The deploy stands: drop the rollback copies.
drop_rollback_copies() {
  local entry backup
  for entry in "${CHANGED[@]}"; do
    backup=${entry#*|}
    if [[ -n $backup ]]; then rm -f -- "$backup"; fi
  done
}

# Keeps the --keep newest releases; current and previous always stay.
prune_releases() {
  local keep_current keep_previous kept name
  keep_current=$(release_name_of "$CURRENT" 2>/dev/null || true)
  keep_previous=$(release_name_of "$PREVIOUS" 2>/dev/null || true)
  if [[ -d $RELEASES ]]; then
    kept=0
    # Newest first, by the timestamp after the last '-' of each name; current and previous always stay.
    while read -r _ name; do
      [[ -n $name ]] || continue
      if ((kept < KEEP)) || [[ $name == "$keep_current" || $name == "$keep_previous" ]]; then
        kept=$((kept + 1))
        continue
      fi
      say "removing old release $name (--keep $KEEP)"
      run rm -rf -- "${RELEASES:?}/$name"
    done < <(find "$RELEASES" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' |
      awk '{ n = split($0, parts, "-"); print parts[n], $0 }' | sort -r)
  fi
}

# --- main -------------------------------------------------------------------------------------------------
parse_args "$@"
check_args
set_paths
trap cleanup EXIT
preflight
if ((ROLLBACK_ONLY)); then rollback_only; fi
check_sources
find_node
check_compiler
name_release
check_secret
take_lock
build_release
stage_default_config
decide_config
check_config
check_port
create_user
install_and_switch
restart_and_wait
drop_rollback_copies
prune_releases
if ((DRY_RUN)); then
  say "dry run done: nothing was changed"
else
  say "deployed $NAME"
fi
