# Shared helpers of the launch scripts (sourced, not run).

die() { echo "${0##*/}: $*" >&2; exit 2; }

quote() {  # quote WORD...: shell-quoted words, plain where safe, else in single quotes
  local out=() w
  for w in "$@"; do
    if [[ "$w" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=("$w")
    else
      out+=("'${w//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}
