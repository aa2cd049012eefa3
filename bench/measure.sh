# Sourced by the bench scripts. `measure LABEL COMMAND...` runs COMMAND three times, each on a
# warm page cache (the files in the array `warm` are read first), prints every run's wall time
# and peak RSS and their median, and leaves the median in "$work/LABEL.median".
measure() {
  local label="$1"; shift
  local times=()
  for run in 1 2 3; do
    cat "${warm[@]}" > /dev/null
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" > /dev/null 2> "$work/$label.log"
    read -r seconds kb < "$work/time.txt"
    echo "$label run $run: ${seconds} s, peak RSS $((kb / 1024)) MB"
    times+=("$seconds")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 2p > "$work/$label.median"
  echo "$label median: $(cat "$work/$label.median") s"
}
