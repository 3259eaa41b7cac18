# shellcheck shell=bash
# parts/mail.sh: gear-mailprog's directories and the mail catcher.

# gear-mailprog's own places, SlurmUser's alone (docs/admin.md): the log names
# users' addresses and numbers; the state directory keeps the SMS counts.
mailprog_dirs() {
  install -d -m 0700 "$ROOT/var/log/gear" "$ROOT/var/spool/gear-mailprog"
  chroot "$ROOT" chown slurm:slurm /var/log/gear /var/spool/gear-mailprog
  chmod 0700 "$ROOT/var/log/gear"
  if [[ -e $ROOT/var/log/gear/mail.log ]]; then chmod 0600 "$ROOT/var/log/gear/mail.log"; fi
}

# The mail catcher: a real SMTP server (aiosmtpd) on 127.0.0.1:$SMTP_PORT, inside
# the namespace (on the controller, beside slurmctld and its MailProg; `down` stops it with the rest), that keeps each message
# slurmctld's MailProg (gear-mailprog) sent as a file in $MAILDIR.
catcher_pids() {
  local p
  holder_pid >/dev/null || return 0
  # shellcheck disable=SC2046
  for p in $(ns_pids $(cluster_nss)); do   # the python3 itself, not runuser above it
    [[ $(cat "/proc/$p/comm" 2>/dev/null) == python3* ]] || continue
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'mailcatcher\.py serve' && echo "$p"
  done
  return 0
}

start_mailcatcher() {
  local i nobody
  [[ -n $(catcher_pids) ]] && return 0
  nobody=$(chroot "$ROOT" id -u nobody)
  install -d -o "$nobody" -g "$(chroot "$ROOT" id -g nobody)" -m 0755 "$MAILDIR"
  # Detached like the daemons: no fd of ours (a caller's pipe, the lock) stays open in it.
  setsid bash -c 'in_controller setsid runuser -u nobody -- python3 /opt/gear-hpc/lib/gear_hpc/devcluster/mailcatcher.py \
    serve --dir "$1" --port "$2"' _ "$MAILDIR" "$SMTP_PORT" </dev/null >>"$LOGS/mailcatcher.log" 2>&1 9>&- &
  for ((i = 0; i < 100; i++)); do
    if port_open "$SMTP_PORT"; then
      [[ -n $(catcher_pids) ]] || die "127.0.0.1:$SMTP_PORT is taken by another program; the mail catcher needs it"
      say "mail catcher: listening on 127.0.0.1:$SMTP_PORT, mail kept in $MAILDIR"
      return 0
    fi
    sleep 0.1
  done
  tail -n 15 "$LOGS/mailcatcher.log" >&2
  die "the mail catcher did not start on 127.0.0.1:$SMTP_PORT (log: $LOGS/mailcatcher.log)"
}
