#!/usr/bin/env bash
# Checks that the repository stands on its own.
#
#  (a) Links: every relative link of every Markdown file (`[text](path)`,
#      `[text](path#anchor)`, `[label]: path`) points at a file or directory
#      that exists inside the repository, and its `#anchor`, when the target
#      is a Markdown file, at one of its headings (or an `<a id="…">`).
#      Links with a scheme (https:, mailto:, file:…) are not checked; links
#      inside fenced code blocks and `code spans` are not links.
#  (b) Outside references: no line of README.md, docs/, src/, sim/, tests/,
#      scripts/, packaging/, image/, systemd/, .ci/ (nor of any other *.md or
#      the top-level build files) names a document that is not in the
#      repository. The protocol documents are docs/protocol/*.md: a mention
#      of one of them counts only as a path under docs/protocol/
#      ("docs/protocol/sync-rules.md", or a sibling's name inside
#      docs/protocol/); a bare file name of the old document set, a
#      directory outside the repository, or the style and architecture
#      notes that never were part of it, count as pointing outside.
#      (The patterns below are written with brackets, e.g. `a[b]c`, so that
#      this script does not match itself.)
#  (c) Paths and sections named in text: outside fenced code, in Markdown
#      files and in the comment lines of code, scripts and units, every
#      repository path written out (`src/delivery/mod.rs`, or `pay/mod.rs`
#      under src/) names a file that exists (system paths such as /usr/…,
#      /etc/… and build outputs are not checked), and every section quoted
#      after a Markdown file (`<file>.md, "Heading"` or `<file>.md
#      ("Heading")`) is the start of one of its headings (a heading's
#      number, "5. Size", may be left out).
#
# Usage: scripts/check-refs.sh [--links-only]
#   --links-only  run only (a) (what CI enforces: a missing link target
#                 fails the build).
# Exit status: 0 when every check run passed, 1 otherwise, 2 on bad usage.
set -euo pipefail
export LC_ALL=C

usage() {
	sed -n '2,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'
}

links_only=0
case "${1:-}" in
"") ;;
--links-only) links_only=1 ;;
-h | --help)
	usage
	exit 0
	;;
*)
	usage >&2
	exit 2
	;;
esac
[ "$#" -le 1 ] || {
	usage >&2
	exit 2
}

ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$ROOT"

# Files of the working tree under the given paths: tracked or new (not
# ignored), that still exist; `find` when this is not a git checkout.
list_files() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files --cached --others --exclude-standard -- "$@"
	else
		local p
		for p in "$@"; do
			[ -e "$p" ] || continue
			find "$p" \( -name .git -o -name target \) -prune -o -type f -print
		done
	fi | sed 's#^\./##' | sort -u | while IFS= read -r f; do
		[ -f "$f" ] && printf '%s\n' "$f"
	done
}

# ------------------------------------------------------------------ (a) links

# Prints "<line>\t<target>" for every link of a Markdown file, outside
# fenced code blocks and code spans.
extract_links() {
	awk '
	/^[ \t]*(```|~~~)/ { fence = !fence; next }
	fence { next }
	{
		line = $0
		gsub(/`[^`]*`/, "", line)
		if (match(line, /^ *\[[^]]+\]:[ \t]*[^ \t]+/)) {
			def = substr(line, RSTART, RLENGTH)
			sub(/^ *\[[^]]+\]:[ \t]*/, "", def)
			print NR "\t" def
			next
		}
		while (match(line, /\]\([^)]*\)/)) {
			print NR "\t" substr(line, RSTART + 2, RLENGTH - 3)
			line = substr(line, RSTART + RLENGTH)
		}
	}' "$1"
}

# Lower-case letters and digits only: headings and anchors are compared in
# this form, which is blind to the details of a renderer's slug rules
# (punctuation, non-ASCII characters, spaces turned into hyphens).
squash() {
	tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9\n'
}

# The anchors of a Markdown file, squashed, one a line.
anchors_of() {
	awk '
	/^[ \t]*(```|~~~)/ { fence = !fence; next }
	fence { next }
	/^#+[ \t]/ {
		h = $0
		sub(/^#+[ \t]+/, "", h)
		sub(/[ \t]+#+[ \t]*$/, "", h)
		gsub(/\]\([^)]*\)/, "", h)
		print h
	}
	{
		line = $0
		while (match(line, /<a (id|name)="[^"]+"/)) {
			a = substr(line, RSTART, RLENGTH)
			sub(/^<a (id|name)="/, "", a)
			sub(/"$/, "", a)
			print a
			line = substr(line, RSTART + RLENGTH)
		}
	}' "$1" | squash
}

declare -A ANCHORS=()
has_anchor() { # file anchor
	local file="$1" want
	if [ -z "${ANCHORS[$file]+set}" ]; then
		ANCHORS[$file]="$(anchors_of "$file")"
	fi
	want="$(printf '%s\n' "$2" | squash)"
	[ -n "$want" ] && grep -qxF -- "$want" <<<"${ANCHORS[$file]}"
}

link_problems=0
check_links() {
	local md dir lineno raw target path anchor resolved rel
	while IFS= read -r md; do
		dir="$(dirname "$md")"
		while IFS=$'\t' read -r lineno raw; do
			# `<path with spaces>` or `path "title"`.
			if [[ "$raw" == \<*\>* ]]; then
				target="${raw#<}"
				target="${target%%>*}"
			else
				target="${raw%% *}"
			fi
			[ -n "$target" ] || continue
			# A scheme (https:, mailto:, file:…): not a path in the repository.
			[[ "$target" =~ ^[A-Za-z][A-Za-z0-9+.-]*: ]] && continue
			path="${target%%#*}"
			anchor=""
			[[ "$target" == *"#"* ]] && anchor="${target#*#}"
			path="${path%%\?*}"
			path="${path//%20/ }"
			if [ -z "$path" ]; then
				resolved="$ROOT/$md"
			elif [[ "$path" == /* ]]; then
				resolved="$(realpath -m "$ROOT/$path")"
			else
				resolved="$(realpath -m "$ROOT/$dir/$path")"
			fi
			rel="${resolved#"$ROOT"/}"
			if [ "$resolved" != "$ROOT" ] && [ "$rel" = "$resolved" ]; then
				echo "$md:$lineno: $target: outside the repository"
				link_problems=$((link_problems + 1))
			elif [ ! -e "$resolved" ]; then
				echo "$md:$lineno: $target: no such file ($rel)"
				link_problems=$((link_problems + 1))
			elif [ -n "$anchor" ] && [[ "$resolved" == *.md ]] && ! has_anchor "$rel" "$anchor"; then
				echo "$md:$lineno: $target: no heading or anchor \"#$anchor\" in $rel"
				link_problems=$((link_problems + 1))
			fi
		done < <(extract_links "$md")
	done < <(list_files '*.md')
}

echo "== links in Markdown files"
check_links
if [ "$link_problems" -eq 0 ]; then
	echo "ok: every relative link points inside the repository at something that exists"
else
	echo "FAIL: $link_problems broken link(s)"
fi

# -------------------------------------------------------- (b) outside refs

outside_problems=0
if [ "$links_only" -eq 0 ]; then
	# What names something outside the repository.
	OUTSIDE='share[d]/spec|\.\./share[d]|/work/share[d]|stee[r]ing|STYL[E]\.md|ARCHITECTUR[E]\.md|cashpad-local-v[1]|(zenchef-pay-api|sync-rules|zenchef-api|agent-interface)\.m[d]'
	# The same names as paths of the repository's own protocol documents.
	OWN='protocol/(sync-rule[s]|zenchef-ap[i]|agent-interfac[e]|cashpad-loca[l]|zenchef-pa[y])\.md'
	# Inside docs/protocol/, a sibling's bare name is a path of the repository.
	SIBLING='(^|[^A-Za-z0-9_-])(sync-rule[s]|zenchef-ap[i]|agent-interfac[e])\.md'
	declare -A PER_DIR=()
	echo
	echo "== references to documents outside the repository"
	while IFS= read -r f; do
		case "$f" in
		docs/protocol/*) strip="s#$OWN##g; s#$SIBLING#\\1#g" ;;
		*) strip="s#$OWN##g" ;;
		esac
		# Line numbers of the hits (after the allowed forms are removed),
		# then those lines as they are in the file.
		hits="$(sed -E "$strip" "$f" | grep -nIE "$OUTSIDE" | cut -d: -f1 || true)"
		[ -n "$hits" ] || continue
		awk -v f="$f" 'NR == FNR { want[$1] = 1; next } FNR in want { print f ":" FNR ":" $0 }' \
			- "$f" <<<"$hits"
		n="$(printf '%s\n' "$hits" | wc -l)"
		top="${f%%/*}"
		[ "$top" = "$f" ] && top="(top level)"
		PER_DIR[$top]=$((${PER_DIR[$top]:-0} + n))
		outside_problems=$((outside_problems + n))
	done < <(list_files README.md docs src sim tests scripts packaging image systemd .ci \
		'*.md' Cargo.toml build.rs cross.toml .cargo)
	if [ "$outside_problems" -eq 0 ]; then
		echo "ok: nothing names a document outside the repository"
	else
		echo "FAIL: $outside_problems line(s) name a document outside the repository:"
		while IFS= read -r d; do
			printf '  %-14s %d\n' "$d" "${PER_DIR[$d]}"
		done < <(printf '%s\n' "${!PER_DIR[@]}" | sort)
	fi
fi

# ------------------------------------------------ (c) paths and sections

# Prints "<line>\t<text>" for the lines of file $1 that are prose: outside
# fenced code in Markdown, comment lines elsewhere.
prose_lines() {
	case "$1" in
	*.md) awk '/^[ \t]*(```|~~~)/ { fence = !fence; next } !fence { print NR "\t" $0 }' "$1" ;;
	*.rs) awk '/^[ \t]*\/\// { print NR "\t" $0 }' "$1" ;;
	*) awk '/^[ \t]*#/ { print NR "\t" $0 }' "$1" ;;
	esac
}

named_problems=0
if [ "$links_only" -eq 0 ]; then
	PATH_RE='(^|[^A-Za-z0-9_./~:$<{*@-])[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+\.(md|rs|sh|toml|service|timer|catalog|example|png)(\.[A-Za-z0-9]+)*'
	SECTION_RE='[A-Za-z0-9_./-]+\.md(\)|`)?( \(|, )"[^"]+"'
	echo
	echo "== paths and sections named in text"
	while IFS= read -r f; do
		dir="$(dirname "$f")"
		while IFS=$'\t' read -r lineno line; do
			while IFS= read -r t; do
				[ -n "$t" ] || continue
				case "$t" in usr/* | etc/* | var/* | lib/* | dist/* | target/* | run/* | boot/* | home/* | root/* | tmp/*) continue ;; esac
				if [ ! -e "$t" ] && [ ! -e "$dir/$t" ] && [ ! -e "src/$t" ]; then
					echo "$f:$lineno: $t: no such file in the repository"
					named_problems=$((named_problems + 1))
				fi
			done < <(grep -oE "$PATH_RE" <<<"$line" | sed -E 's/^[^A-Za-z0-9_.]//' || true)
			while IFS= read -r ref; do
				[ -n "$ref" ] || continue
				md="${ref%%.md*}.md"
				md="${md#(}"
				heading="${ref#*\"}"
				heading="${heading%\"}"
				target=""
				for c in "$md" "$dir/$md" "docs/$md"; do
					[ -f "$c" ] && target="$(realpath -m --relative-to="$ROOT" "$c")" && break
				done
				if [ -z "$target" ]; then
					echo "$f:$lineno: $md: no such file in the repository"
					named_problems=$((named_problems + 1))
					continue
				fi
				if [ -z "${ANCHORS[$target]+set}" ]; then
					ANCHORS[$target]="$(anchors_of "$target")"
				fi
				want="$(printf '%s\n' "$heading" | squash)"
				if [ -z "$want" ] || ! grep -q -- "^[0-9]*$want" <<<"${ANCHORS[$target]}"; then
					echo "$f:$lineno: \"$heading\": no such heading in $target"
					named_problems=$((named_problems + 1))
				fi
			done < <(grep -oE "$SECTION_RE" <<<"$line" || true)
		done < <(prose_lines "$f" | grep -E "$PATH_RE|$SECTION_RE" || true)
	done < <(list_files README.md docs src sim tests scripts packaging image systemd .ci \
		'*.md' Cargo.toml build.rs cross.toml .cargo | grep -vE '\.(png|svg|json)$')
	if [ "$named_problems" -eq 0 ]; then
		echo "ok: every path and section named in text exists"
	else
		echo "FAIL: $named_problems path(s) or section(s) named in text do not exist"
	fi
fi

[ "$link_problems" -eq 0 ] && [ "$outside_problems" -eq 0 ] && [ "$named_problems" -eq 0 ]
