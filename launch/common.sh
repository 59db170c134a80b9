# Shared helpers of the launch scripts (sourced, not run).

die() { echo "${0##*/}: $*" >&2; exit 2; }

# The checkout that holds this launch/ directory.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

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

# parse_options SPEC... -- ARG...: reads a launcher's command line. SPEC `--name=var` stores
# VALUE of `--name=VALUE` in $var; SPEC `--name` sets $name (dashes as underscores) to 1.
# -h/--help prints usage and exits, --dry-run sets dry_run=1; every other word, and all words
# after `--`, go to the array main_args (the mimojax.main flags).
parse_options() {
  local specs=() spec matched
  while [[ "$1" != "--" ]]; do
    specs+=("$1")
    shift
  done
  shift
  dry_run=0
  main_args=()
  while (($#)); do
    case "$1" in
      -h|--help) usage; exit 0 ;;
      --dry-run) dry_run=1 ;;
      --) shift; main_args+=("$@"); break ;;
      *)
        matched=0
        for spec in "${specs[@]}"; do
          if [[ "$spec" == *=* && "$1" == "${spec%%=*}="* ]]; then
            printf -v "${spec#*=}" '%s' "${1#*=}"
          elif [[ "$spec" != *=* && "$1" == "$spec" ]]; then
            spec="${spec#--}"
            printf -v "${spec//-/_}" '%s' 1
          else
            continue
          fi
          matched=1
          break
        done
        ((matched)) || main_args+=("$1") ;;
    esac
    shift
  done
}

need_positive() {  # need_positive NAME VALUE [WHAT]: exit 2 unless VALUE is 1, 2, 3, ...
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1=$2 must be ${3:-a positive integer}"
}

need_main_args() {  # need_main_args MESSAGE: exit 2 with MESSAGE unless main_args is non-empty
  ((${#main_args[@]})) || die "$1"
}
