#!/usr/bin/env bash
# Checks docker/Dockerfile against the tree, since no test builds the image:
#   - every COPY/ADD source taken from the build context (the repository root)
#     exists and is not excluded by .dockerignore;
#   - every repository path a RUN line names (scripts/..., docker/..., any
#     path under a top-level entry of the repository; the -S directory and
#     the presets file of a cmake call) exists, and a COPY of that stage
#     brought it in;
#   - every stage that --from= names is defined above it;
#   - every /opt/lshmoe path in the Dockerfile and in docker/README.md is one
#     the install step installs (the list below), the Dockerfile installs to
#     that prefix, and its last stage copies it.
#
# usage: scripts/check_docker.sh [DOCKERFILE [README]]
# Run from anywhere; exits 0 when all holds, 1 naming each problem.
set -euo pipefail

dockerfile=${1:-}
readme=${2:-}
# Arguments are relative to the caller's directory.
[ -z "$dockerfile" ] || dockerfile=$(realpath -m -- "$dockerfile")
[ -z "$readme" ] || readme=$(realpath -m -- "$readme")
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dockerfile=${dockerfile:-$root/docker/Dockerfile}
readme=${readme:-$root/docker/README.md}

prefix=/opt/lshmoe
# What `cmake --install build --prefix /opt/lshmoe` installs. An entry ending
# in / is a directory: any path under it is accepted (the Python package's
# files are also checked against python/lshmoe/).
installed=(
  lib/liblshmoe.so
  lib/liblshmoe.so.0
  lib/liblshmoe.so.0.1.0
  lib/libnccl-net-lshmoe.so
  lib/liblshmoe_preload.so
  lib/liblshmoe_preload_cuda.so
  bin/lshmoe_info
  bin/lshmoe_eval
  bin/lshmoe_alltoall_perf
  include/lshmoe/lshmoe.h
  lib/cmake/lshmoe/
  lib/pkgconfig/lshmoe.pc
  lib/python3/dist-packages/lshmoe/
)
python_package=lib/python3/dist-packages/lshmoe/
python_source=python/lshmoe/

problems=0
problem() {
  echo "check_docker: $*"
  problems=$((problems + 1))
}

for f in "$dockerfile" "$readme"; do
  [ -f "$f" ] || { echo "check_docker: $f does not exist"; exit 1; }
done
df_name=${dockerfile#"$root"/}

# The top-level entries of the repository: where Git knows them, those it
# tracks or would (not ignored), so that build trees are left out.
declare -A toplevel=()
if git -C "$root" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  while IFS= read -r entry; do toplevel[$entry]=1; done \
    < <(git -C "$root" ls-files --cached --others --exclude-standard | cut -d/ -f1 | sort -u)
else
  for entry in * .[!.]*; do
    case $entry in build* | .git | '.[!.]*') continue ;; esac
    [ -e "$entry" ] && toplevel[$entry]=1
  done
fi

# .dockerignore, in order; a later pattern (also a !exception) wins.
ignore_patterns=()
if [ -f .dockerignore ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    line=$(echo "$line" | sed -E 's/^[[:space:]]+//; s/[[:space:]]+$//')
    [ -z "$line" ] && continue
    [[ $line == \#* ]] && continue
    ignore_patterns+=("$line")
  done < .dockerignore
fi
# Whether the build context lacks PATH (it, or a folder above it, is ignored).
# Docker matches with Go's filepath.Match, where * stops at /; bash's [[ ]]
# lets * cross it, close enough for the patterns this repository uses.
ignored() {
  local path=$1 result=1 pattern negate candidate
  for pattern in "${ignore_patterns[@]}"; do
    negate=0
    if [[ $pattern == !* ]]; then negate=1; pattern=${pattern#!}; fi
    pattern=${pattern#/}
    pattern=${pattern#./}
    pattern=${pattern%/}
    candidate=$path
    while :; do
      # shellcheck disable=SC2053  # the pattern is a glob on purpose
      if [[ $candidate == $pattern ]] || { [[ $pattern == '**/'* ]] && [[ $candidate == ${pattern#'**/'} ]]; }; then
        result=$((negate ? 1 : 0))
        break
      fi
      [[ $candidate == */* ]] || break
      candidate=${candidate%/*}
    done
  done
  return $result
}

# A relative path without ./ and trailing /; "." for the root.
normalise() {
  local p=$1
  while [[ $p == ./* ]]; do p=${p#./}; done
  while [[ $p == */ && $p != / ]]; do p=${p%/}; done
  [ -z "$p" ] && p=.
  echo "$p"
}

# Whether PATH (repository-relative, globs allowed) names something in the tree.
in_tree() {
  local p=$1
  if [[ $p == *[*?[]* ]]; then
    compgen -G "$root/$p" > /dev/null
  else
    [ -e "$root/$p" ]
  fi
}

# The Dockerfile's instructions, one per line as "LINE<TAB>TEXT": continuation
# lines joined, comment lines dropped (Docker drops them inside continuations
# too), blank lines inside a continuation skipped.
instructions=$(awk '
  /^[[:space:]]*#/ { next }
  /^[[:space:]]*$/ { next }
  {
    line = $0
    sub(/\r$/, "", line)
    if (buf == "") start = NR
    if (line ~ /\\[[:space:]]*$/) {
      sub(/\\[[:space:]]*$/, "", line)
      buf = buf line " "
      next
    }
    buf = buf line
    print start "\t" buf
    buf = ""
  }
  END { if (buf != "") print start "\t" buf }
' "$dockerfile")

stage_names=()   # lower-case name of each stage ("" when unnamed)
declare -A stage_copies=()  # stage index -> space-separated context sources
stage=-1
installs_to_prefix=0
last_stage_copies_prefix=-1

# Whether the current stage has PATH from the build context.
copied() {
  local path=$1 src
  for src in ${stage_copies[$stage]:-}; do
    if [ "$src" = . ] || [ "$src" = "$path" ] || [[ $path == "$src"/* ]]; then
      ignored "$path" && return 1
      return 0
    fi
    # shellcheck disable=SC2053
    if [[ $src == *[*?[]* ]] && [[ $path == $src ]]; then return 0; fi
  done
  return 1
}

check_run_path() {
  local line=$1 path=$2 what=$3
  if ! in_tree "$path"; then
    problem "$df_name:$line: RUN uses $what $path, which is not in the repository"
  elif ! copied "$path"; then
    problem "$df_name:$line: RUN uses $what $path, which no COPY of this stage brings in (or .dockerignore excludes)"
  fi
}

while IFS=$'\t' read -r line text; do
  [ -n "$text" ] || continue
  read -r -a words <<< "$text"
  keyword=${words[0]^^}
  args=("${words[@]:1}")
  case $keyword in
    FROM)
      stage=$((stage + 1))
      i=0
      while [ $i -lt ${#args[@]} ] && [[ ${args[$i]} == --* ]]; do i=$((i + 1)); done
      image=${args[$i]:-}
      name=""
      as=${args[$((i + 1))]:-}
      [ "${as,,}" = as ] && name=${args[$((i + 2))]:-}
      name=${name,,}
      [ -n "$image" ] || problem "$df_name:$line: FROM names no image"
      # A stage built on an earlier one has what that one copied.
      stage_copies[$stage]=""
      for ((s = 0; s < stage; s++)); do
        if [ -n "${stage_names[$s]}" ] && [ "${stage_names[$s]}" = "${image,,}" ]; then
          stage_copies[$stage]=${stage_copies[$s]}
        fi
      done
      stage_names+=("$name")
      ;;
    COPY | ADD)
      if [ $stage -lt 0 ]; then
        problem "$df_name:$line: $keyword before any FROM"
        continue
      fi
      from=""
      operands=()
      for w in "${args[@]}"; do
        case $w in
          --from=*) from=${w#--from=} ;;
          --*) ;;
          *) operands+=("$w") ;;
        esac
      done
      # The JSON form: ["src", ..., "dest"].
      if [[ ${operands[0]:-} == \[* ]]; then
        joined="${operands[*]}"
        joined=${joined#[}
        joined=${joined%]}
        IFS=',' read -r -a operands <<< "$joined"
        for k in "${!operands[@]}"; do
          operands[k]=$(echo "${operands[$k]}" | sed -E 's/^[[:space:]]*"?//; s/"?[[:space:]]*$//')
        done
      fi
      if [ ${#operands[@]} -lt 2 ]; then
        problem "$df_name:$line: $keyword needs a source and a destination"
        continue
      fi
      dest=${operands[-1]}
      sources=("${operands[@]:0:${#operands[@]}-1}")
      if [ -n "$from" ]; then
        lower=${from,,}
        found=0
        if [[ $lower =~ ^[0-9]+$ ]]; then
          [ "$lower" -lt "$stage" ] && found=1
        else
          for ((s = 0; s < stage; s++)); do
            [ "${stage_names[$s]}" = "$lower" ] && found=1
          done
          # An image reference (registry/name:tag) rather than a stage.
          [[ $lower == */* || $lower == *:* || $lower == *@* ]] && found=1
        fi
        [ $found = 1 ] || problem "$df_name:$line: --from=$from names no stage defined above"
        for src in "${sources[@]}"; do
          if [ "$(normalise "$src")" = "$prefix" ] || [ "$(normalise "$src")" = "$prefix/" ]; then
            [ "$(normalise "$dest")" = "$prefix" ] && last_stage_copies_prefix=$stage
          fi
        done
        continue
      fi
      for src in "${sources[@]}"; do
        case $src in
          *://* | git@*) continue ;;   # ADD of a URL
          *'$'*) continue ;;           # built from a build argument
        esac
        if [[ $src == /* ]]; then
          problem "$df_name:$line: $keyword source $src is absolute; the build context is the repository root"
          continue
        fi
        rel=$(normalise "$src")
        if [[ $rel == ..* ]]; then
          problem "$df_name:$line: $keyword source $src lies outside the build context"
        elif ! in_tree "$rel"; then
          problem "$df_name:$line: $keyword source $src is not in the repository"
        elif [ "$rel" != . ] && ignored "$rel"; then
          problem "$df_name:$line: $keyword source $src is excluded by .dockerignore"
        fi
        stage_copies[$stage]+=" $rel"
      done
      ;;
    RUN)
      if [ $stage -lt 0 ]; then
        problem "$df_name:$line: RUN before any FROM"
        continue
      fi
      prev=""
      uses_preset=0
      for w in "${args[@]}"; do
        # Strip quotes and the shell's separators around a word.
        w=${w//\"/}
        w=${w//\'/}
        w=${w%;}
        w=${w%)}
        w=${w#(}
        if [ "$prev" = -S ]; then
          check_run_path "$line" "$(normalise "$w/CMakeLists.txt")" "the cmake source"
          prev=$w
          continue
        fi
        [[ $w == --preset || $w == --preset=* ]] && uses_preset=1
        prev=$w
        case $w in
          --mount=* | --network=* | --security=*) continue ;;
          -S?*) check_run_path "$line" "$(normalise "${w#-S}/CMakeLists.txt")" "the cmake source"; continue ;;
          -*=*) w=${w#*=} ;;
          -*) continue ;;
          *=*) w=${w#*=} ;;
        esac
        case $w in
          '' | /* | *'$'* | *://* | '~'*) continue ;;
        esac
        rel=$(normalise "$w")
        [[ $rel == */* ]] || continue
        [ -n "${toplevel[${rel%%/*}]:-}" ] || continue
        check_run_path "$line" "$rel" "the repository path"
      done
      if [ $uses_preset = 1 ]; then
        check_run_path "$line" CMakePresets.json "cmake presets from"
      fi
      # The prefix that the list of installed files is for.
      if [[ $text =~ cmake[[:space:]]+--install[[:space:]].*--prefix[[:space:]=]+\"?([^[:space:]\";]+) ]]; then
        if [ "$(normalise "${BASH_REMATCH[1]}")" = "$prefix" ]; then
          installs_to_prefix=1
        else
          installs_to_prefix=2
          problem "$df_name:$line: cmake --install goes to ${BASH_REMATCH[1]}, not $prefix (the prefix the list of installed files in this script is for)"
        fi
      elif [[ $text =~ CMAKE_INSTALL_PREFIX=\"?([^[:space:]\";]+) ]]; then
        [ "$(normalise "${BASH_REMATCH[1]}")" = "$prefix" ] && installs_to_prefix=1
      fi
      ;;
  esac
done <<< "$instructions"

[ $stage -ge 0 ] || problem "$df_name: no FROM"
[ $installs_to_prefix != 0 ] || problem "$df_name: no RUN installs with cmake --install ... --prefix $prefix"
if [ $stage -ge 0 ] && [ "$last_stage_copies_prefix" != "$stage" ]; then
  problem "$df_name: its last stage does not copy $prefix from a build stage (COPY --from=STAGE $prefix $prefix)"
fi

# The /opt/lshmoe paths that the Dockerfile and the README name.
accepted() {
  local p=$1 entry
  [ "$p" = "$prefix" ] && return 0
  p=${p#"$prefix"/}
  for entry in "${installed[@]}"; do
    if [[ $entry == */ ]]; then
      [ "$p/" = "$entry" ] && return 0
      if [[ $p == "$entry"* ]]; then
        if [ "$entry" = "$python_package" ]; then
          # A file of the Python package must be one of python/lshmoe/.
          local inner=${p#"$entry"}
          [ -e "$root/$python_source${inner%%/*}" ] && return 0
          return 1
        fi
        return 0
      fi
    else
      [ "$p" = "$entry" ] && return 0
    fi
    # A folder above an installed file.
    [[ $entry == "$p"/* ]] && return 0
  done
  return 1
}
for file in "$dockerfile" "$readme"; do
  name=${file#"$root"/}
  while IFS=: read -r n path; do
    path=${path%/}
    path=${path%.}
    accepted "$path" || problem "$name:$n: $path is not among the files the install step installs"
  done < <(grep -noE "$prefix(/[A-Za-z0-9._+@-]+)*/?" "$file" || true)
done

if [ $problems -gt 0 ]; then
  echo "check_docker: $problems problem(s)"
  exit 1
fi
echo "check_docker: $df_name and ${readme#"$root"/} agree with the tree and the install layout"
