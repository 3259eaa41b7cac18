# lib/hooks.sh (the template sets the trap: trap on_exit EXIT).

# What must be undone however the script ends (an exit on an error, a
# signal that ends bash): at_exit CMD adds CMD; each runs once, in order.
exit_hooks=()
at_exit() { exit_hooks+=("$1"); }
on_exit() {
  local hook
  for hook in "${exit_hooks[@]}"; do eval "$hook"; done
  exit_hooks=()
}
