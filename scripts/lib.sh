# Shared by scripts/test and scripts/demo (sourced, not run).
# As root, scripts/stack runs Elasticsearch as an unprivileged user, which cannot enter a clone
# under a private home such as /root; keep the stack's state in /var/tmp then.
stack_state_dir_for_root() {
  if [ "$(id -u)" = 0 ] && [ -z "${SHIPPER_STACK_STATE_DIR:-}" ] \
     && ! su -s /bin/sh nobody -c "test -x '$PWD'" 2>/dev/null; then
    export SHIPPER_STACK_STATE_DIR="/var/tmp/shipper-stack-$(printf '%s' "$PWD" | md5sum | cut -c1-8)"
  fi
}
