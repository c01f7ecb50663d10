#!/usr/bin/env bash
# Produces a signed zenchef-edge release: one archive per target and the
# manifest.json that lists them (format: docs/README-update.md).
#
#   scripts/release.sh --version 0.2.0 --key release.key --out dist/ \
#       --binary aarch64-unknown-linux-gnu=target/aarch64-unknown-linux-gnu/release/zenchef-edge \
#       [--binary TARGET=PATH ...] [--min-previous 0.1.0] [--rollback-of 0.3.0[,0.3.1]] \
#       [--base-url https://updates.example/stable] [--pub release.pub]
#
# --pub: check each signed archive with the public key before publishing; an
# archive that does not verify is deleted and the script fails (nothing is
# left in --out to upload by mistake).
#
# The archives and the manifest are written mode 0644 (a web server running
# as another user must be able to read them). Each manifest entry names the
# signing key's id (`key_id`: the first 16 hex digits of the SHA-256 of the
# 32-byte public key, the last 32 bytes of the private key file), so a box
# configured with another key says "signed by an unknown key (key id …)"
# instead of "bad signature" (docs/README-update.md).
#
# A binary that carries the placeholder signing key (packaging/channel.toml
# still says `placeholder = true`) is refused unless
# ZENCHEF_ALLOW_PLACEHOLDER_KEY=1 (tests and CI only).
#
# Needs: bash, tar, gzip, sha256sum, and `zipsign` (cargo install zipsign).
# The private key never leaves the signing machine; create it once with
#   zipsign gen-key release.key release.pub
# and put `base64 -w0 release.pub` in every box's update.public_key.
#
# Each archive holds `zenchef-edge` (0755) and `release.json`, and is signed
# with zipsign's default context, the archive's file name. Upload the
# archives first, the manifest last (boxes read the manifest first).
set -euo pipefail

version="" key="" pub="" out="" min_previous="" rollback_of="" base_url=""
binaries=()
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --key) key="$2"; shift 2 ;;
        --pub) pub="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --binary) binaries+=("$2"); shift 2 ;;
        --min-previous) min_previous="$2"; shift 2 ;;
        --rollback-of) rollback_of="$2"; shift 2 ;;
        --base-url) base_url="${2%/}/"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "release.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
semver='^[0-9]+\.[0-9]+\.[0-9]+$'
[[ "$version" =~ $semver ]] || { echo "release.sh: --version MAJOR.MINOR.PATCH is required" >&2; exit 2; }
[ -n "$key" ] && [ -f "$key" ] || { echo "release.sh: --key FILE (zipsign private key) is required" >&2; exit 2; }
[ -n "$out" ] || { echo "release.sh: --out DIR is required" >&2; exit 2; }
[ ${#binaries[@]} -gt 0 ] || { echo "release.sh: at least one --binary TARGET=PATH is required" >&2; exit 2; }
[ -z "$min_previous" ] || [[ "$min_previous" =~ $semver ]] || { echo "release.sh: bad --min-previous" >&2; exit 2; }
# A binary built while packaging/channel.toml still holds the repository's
# placeholder key (its `placeholder = true` line is compiled into the binary)
# could never install a real release after this one: refused, unless
# ZENCHEF_ALLOW_PLACEHOLDER_KEY=1 (tests and CI only; never for boxes).
for pair in "${binaries[@]}"; do
    bin="${pair#*=}"
    if [ -f "$bin" ] && grep -aqx 'placeholder = true' "$bin"; then
        if [ "${ZENCHEF_ALLOW_PLACEHOLDER_KEY:-}" = 1 ]; then
            echo "release.sh: WARNING: $bin carries the placeholder signing key (ZENCHEF_ALLOW_PLACEHOLDER_KEY=1): a test release, never for boxes" >&2
        else
            echo "release.sh: $bin was built with the placeholder signing key of packaging/channel.toml: a box running it could never update again. Put the channel's real public key there, delete its 'placeholder = true' line and rebuild (ZENCHEF_ALLOW_PLACEHOLDER_KEY=1 is for tests only)" >&2
            exit 1
        fi
    fi
done

command -v zipsign >/dev/null || { echo "release.sh: zipsign not found (cargo install zipsign)" >&2; exit 1; }
[ -z "$pub" ] || [ -f "$pub" ] || { echo "release.sh: --pub $pub: no such file" >&2; exit 2; }
# zipsign's private key file is 64 bytes: the secret key, then the public key.
[ "$(wc -c < "$key")" -eq 64 ] || { echo "release.sh: $key is not a zipsign private key (64 bytes)" >&2; exit 2; }
key_id() { sha256sum | cut -c1-16; }
key_id="$(tail -c 32 "$key" | key_id)"
if [ -n "$pub" ]; then
    pub_id="$(key_id < "$pub")"
    if [ "$pub_id" != "$key_id" ]; then
        echo "release.sh: --pub $pub (key id $pub_id) is not the public half of --key $key (key id $key_id): nothing signed" >&2
        exit 1
    fi
fi

json_opt() { if [ -n "$1" ]; then printf '"%s"' "$1"; else printf 'null'; fi; }
rollback_json="[]"
if [ -n "$rollback_of" ]; then
    items=()
    IFS=',' read -r -a rb <<< "$rollback_of"
    for v in "${rb[@]}"; do
        [[ "$v" =~ $semver ]] || { echo "release.sh: bad --rollback-of $v" >&2; exit 2; }
        items+=("\"$v\"")
    done
    rollback_json="[$(IFS=','; echo "${items[*]}")]"
fi

mkdir -p "$out"
work="$(mktemp -d)"
written=()
# On any failure, remove what this run wrote to --out: a half-made release
# must not be uploaded.
cleanup() {
    status=$?
    rm -rf "$work"
    if [ "$status" -ne 0 ] && [ ${#written[@]} -gt 0 ]; then
        rm -f "${written[@]}"
        echo "release.sh: failed; removed ${written[*]}" >&2
    fi
}
trap cleanup EXIT
entries=()
for pair in "${binaries[@]}"; do
    target="${pair%%=*}"
    bin="${pair#*=}"
    [ -n "$target" ] && [ -f "$bin" ] || { echo "release.sh: bad --binary $pair" >&2; exit 2; }
    name="zenchef-edge-${version}-${target}.tar.gz"
    stage="$work/$target"
    mkdir -p "$stage"
    install -m 0755 "$bin" "$stage/zenchef-edge"
    printf '{"version":"%s","target":"%s","min_previous":%s,"rollback_of":%s}\n' \
        "$version" "$target" "$(json_opt "$min_previous")" "$rollback_json" > "$stage/release.json"
    chmod 0644 "$stage/release.json"
    tar --owner=0 --group=0 --numeric-owner -C "$stage" -czf "$work/$name" zenchef-edge release.json
    # Context defaults to the file name: the box verifies with the same name.
    written+=("$out/$name")
    zipsign sign tar -o "$out/$name" -f "$work/$name" "$key"
    chmod 0644 "$out/$name"
    if [ -n "$pub" ]; then
        zipsign verify tar -q "$out/$name" "$pub" || { echo "release.sh: $name does not verify with $pub" >&2; exit 1; }
    fi
    sha="$(sha256sum "$out/$name" | cut -d' ' -f1)"
    entries+=("$(printf '{"version":"%s","target":"%s","url":"%s%s","sha256":"%s","min_previous":%s,"rollback_of":%s,"key_id":"%s"}' \
        "$version" "$target" "$base_url" "$name" "$sha" "$(json_opt "$min_previous")" "$rollback_json" "$key_id")")
    echo "signed $out/$name ($sha, key id $key_id)"
done
written+=("$out/manifest.json")
printf '{"schema":1,"releases":[%s]}\n' "$(IFS=','; echo "${entries[*]}")" > "$out/manifest.json"
chmod 0644 "$out/manifest.json"
echo "wrote $out/manifest.json"
