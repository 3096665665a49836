# Helpers for the component wrappers: read flags from a static pod manifest and fields
# from the kubelet's config, the way the real components would get them.

# flag MANIFEST NAME -> the value of `- --NAME=value` in the container command
flag() {
  sed -n "s/^[[:space:]]*- --$2=\(.*\)$/\1/p" "$1" | head -n1
}

# all_flags MANIFEST -> every `--flag=value` line of the command, one per line
all_flags() {
  sed -n 's/^[[:space:]]*- \(--[a-z0-9-]*=.*\)$/\1/p' "$1"
}

# field FILE KEY -> value of `KEY: value` at any depth (kubelet config keys are unique)
field() {
  sed -n "s/^[[:space:]]*$2:[[:space:]]*\(.*\)$/\1/p" "$1" | head -n1
}
