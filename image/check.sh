#!/bin/bash
# Static checks of the pi-gen stage (what can be checked without Docker):
# syntax, shellcheck, and that every files/… a script installs exists.
set -euo pipefail
cd "$(dirname "$0")"

scripts=(build.sh stage-zenchef/prerun.sh)
while IFS= read -r f; do scripts+=("$f"); done < <(find stage-zenchef -name '[0-9][0-9]-run*.sh' | sort)

for s in "${scripts[@]}"; do
	bash -n "$s"
	if [ ! -x "$s" ]; then
		echo "$s is not executable (pi-gen runs it directly)" >&2
		exit 1
	fi
done
shellcheck -s bash "${scripts[@]}"
echo "bash -n and shellcheck: ${#scripts[@]} scripts ok"

missing=0
for s in stage-zenchef/*/00-run.sh; do
	dir="$(dirname "$s")"
	# Literal files/… arguments; the .deb is put there by build.sh.
	while IFS= read -r ref; do
		case "$ref" in *'*') continue ;; esac
		if [ ! -e "$dir/$ref" ]; then
			echo "$s installs $ref, which does not exist" >&2
			missing=1
		fi
	done < <(grep -oE 'files/[A-Za-z0-9._-]+[*]?' "$s" | sort -u)
done
[ "$missing" -eq 0 ]
test -f stage-zenchef/EXPORT_IMAGE
test -f config
echo "installed files present"
