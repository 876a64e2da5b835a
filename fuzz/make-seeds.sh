#!/usr/bin/env bash
# Writes small seed inputs into fuzz/corpus/<target>/ (corpora are not kept in git).
# Needs bash, printf, tar, gzip, sha256sum; everything else is made here.
set -euo pipefail
cd "$(dirname "$0")"
C=corpus
mkdir -p "$C"/{demux,tar_walker,tar_index,inflate,image_check}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# demux: frames of each stream type, an empty frame, an observed engine frame.
printf '\001\000\000\000\000\000\000\050%s' '2026-11-27T13:48:54.017243499Z tick 358
' > "$C/demux/observed"
printf '\001\000\000\000\000\000\000\003out\002\000\000\000\000\000\000\004err\n\003\000\000\000\000\000\000\000' > "$C/demux/streams"
printf '\000\000\000\000\000\000\000\002in\003\000\000\000\000\000\000\025Error grabbing logs: ' > "$C/demux/systemerr"

# tar: each format GNU tar writes, with a long name, a symlink and a hard link.
mkdir -p "$W/src/dir"
printf 'hello\n' > "$W/src/dir/file"
printf 'x%.0s' $(seq 1 700) > "$W/src/dir/$(printf 'long%.0s' $(seq 1 30))"
ln -s file "$W/src/dir/sym"
ln "$W/src/dir/file" "$W/src/dir/hard"
for f in gnu pax; do
  tar -C "$W" --format=$f -cf "$C/tar_walker/$f.tar" src
done
for f in ustar v7; do
  tar -C "$W" --format=$f --exclude='long*' -cf "$C/tar_walker/$f.tar" src
done
printf '{"errorDetail":{"message":"boom"}}' | cat "$C/tar_walker/gnu.tar" - > "$C/tar_walker/json-tail.tar"
head -c 1536 "$C/tar_walker/pax.tar" > "$C/tar_walker/truncated.tar"
cp "$C"/tar_walker/*.tar "$C/tar_index/"

# inflate: gzip at several levels, an empty member, two members.
printf 'hello world\n' | gzip -n -1 > "$C/inflate/hello1.gz"
seq 1 2000 | gzip -n -9 > "$C/inflate/seq9.gz"
head -c 3000 "$C/tar_walker/pax.tar" | gzip -n -6 > "$C/inflate/tar6.gz"
printf '' | gzip -n > "$C/inflate/empty.gz"
cat "$C/inflate/hello1.gz" "$C/inflate/empty.gz" > "$C/inflate/multi.gz"

# image_check: a legacy save, a Podman docker-archive and an OCI layout with a gzip layer.
sha() { sha256sum "$1" | cut -d' ' -f1; }
mkdir -p "$W/rootfs/etc"
printf 'box\n' > "$W/rootfs/etc/hostname"
tar -C "$W/rootfs" --format=pax -cf "$W/layer.tar" etc
D=$(sha "$W/layer.tar")
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$D" > "$W/config.json"
CF=$(sha "$W/config.json")

L="$W/legacy"; V1=$(printf 'a%.0s' $(seq 1 64)); V2=$(printf 'b%.0s' $(seq 1 64))
mkdir -p "$L/$V1" "$L/$V2"
cp "$W/layer.tar" "$L/$V1/layer.tar"; printf '1.0' > "$L/$V1/VERSION"; printf '{}' > "$L/$V1/json"
ln -s "../$V1/layer.tar" "$L/$V2/layer.tar"
cp "$W/config.json" "$L/$CF.json"
printf '[{"Config":"%s.json","RepoTags":["x:1"],"Layers":["%s/layer.tar"]},{"Config":"%s.json","RepoTags":null,"Layers":["%s/layer.tar"]}]' "$CF" "$V1" "$CF" "$V2" > "$L/manifest.json"
printf '{"x":{"1":"%s"}}' "$V1" > "$L/repositories"
tar -C "$L" --format=gnu -cf "$C/image_check/legacy.tar" .

P="$W/podman"; mkdir -p "$P/$V1"
cp "$W/layer.tar" "$P/$D.tar"; cp "$W/config.json" "$P/$CF.json"
ln -s "../$D.tar" "$P/$V1/layer.tar"
printf '[{"Config":"%s.json","RepoTags":["localhost/x:1"],"Layers":["%s.tar"]}]' "$CF" "$D" > "$P/manifest.json"
tar -C "$P" --format=gnu -cf "$C/image_check/docker-archive.tar" .

O="$W/oci"; mkdir -p "$O/blobs/sha256"
gzip -n -c "$W/layer.tar" > "$W/layer.tgz"; G=$(sha "$W/layer.tgz")
cp "$W/layer.tgz" "$O/blobs/sha256/$G"; cp "$W/config.json" "$O/blobs/sha256/$CF"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
  "$CF" "$(stat -c %s "$W/config.json")" "$G" "$(stat -c %s "$W/layer.tgz")" > "$W/manifest"
M=$(sha "$W/manifest"); cp "$W/manifest" "$O/blobs/sha256/$M"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d}]}' "$M" "$(stat -c %s "$W/manifest")" > "$O/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$O/oci-layout"
printf '[{"Config":"blobs/sha256/%s","RepoTags":["x:1"],"Layers":["blobs/sha256/%s"]}]' "$CF" "$G" > "$O/manifest.json"
tar -C "$O" --format=pax -cf "$C/image_check/oci-containerd.tar" .

ls -l "$C"/*
