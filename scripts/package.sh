#!/usr/bin/env bash
# package.sh - the two ways nspawnctl is installed on a host, built from the current build
# (run `npm run build` first; `npm run package` does both):
#
#   OUT/nspawnctl-VERSION.tgz       `npm install -g` of it puts nspawnctl on PATH. It carries the
#                                   lockfile as npm-shrinkwrap.json, so a global install gets the
#                                   dependency versions that were tested (all run on Node 18.19+).
#   OUT/nspawnctl_VERSION_all.deb   the same files in /usr/lib/nspawnctl with their production
#                                   node_modules, /usr/bin/nspawnctl, nspawnctl(1) and the bash
#                                   completion generated from the commands' help; built with
#                                   dpkg-deb only. It runs on the distribution's nodejs.
#
#   bash scripts/package.sh [--out DIR]     (default DIR: pkg/ in the project)
#
# Needs node, npm, dpkg-deb, gzip, tar. npm fetches the production dependencies (from its cache
# when they are there). Both files appear in DIR only when complete.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/pkg
while (($#)); do
  case $1 in
    --out) OUT=${2:?--out needs a directory}; shift ;;
    *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "package: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

for tool in node npm dpkg-deb gzip tar md5sum; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
cd "$ROOT"
[[ -f oclif.manifest.json && -f dist/commands/apply.js ]] || die "no build here: run npm run build first (or npm run package)"

pj() { node -p "const p = require('./package.json'); $1"; }
NAME=$(pj 'p.name')
VERSION=$(pj 'p.version')
MAINTAINER=$(pj 'p.author || ""')
[[ -n $MAINTAINER ]] || die "package.json has no author (the .deb's Maintainer)"
# Reproducible dates: the last commit's, unless the caller set SOURCE_DATE_EPOCH.
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
  SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# Built next to OUT, so that the finished files are renamed into place.
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- npm tgz --
# npm decides what the package holds (package.json "files" plus what it always adds); the
# staging copy adds the lockfile under the name npm publishes.
say "npm pack"
mkdir -p "$WORK/npm"
npm pack --dry-run --json 2>/dev/null \
  | node -e 'for (const f of JSON.parse(require("fs").readFileSync(0, "utf8"))[0].files) console.log(f.path)' \
  | while IFS= read -r file; do
      mkdir -p "$WORK/npm/$(dirname "$file")"
      cp -p "$file" "$WORK/npm/$file"
    done
cp package-lock.json "$WORK/npm/npm-shrinkwrap.json"
TGZ=$(cd "$WORK/npm" && npm pack --ignore-scripts --pack-destination "$WORK" 2>/dev/null | tail -n 1)
[[ -f $WORK/$TGZ && $TGZ == "$NAME-$VERSION.tgz" ]] || die "npm pack did not write $NAME-$VERSION.tgz (got '$TGZ')"

# ------------------------------------------------------------------- .deb --
DEB=$WORK/deb
LIB=/usr/lib/$NAME
mkdir -p "$DEB$LIB" "$WORK/unpack"
tar -xzf "$WORK/$TGZ" -C "$WORK/unpack"
cp -a "$WORK/unpack/package/." "$DEB$LIB/"
say "production dependencies (npm ci --omit=dev)"
(cd "$DEB$LIB" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null)
# Not needed to run: npm's own bookkeeping, links to dependencies' CLIs, the README (it is in
# /usr/share/doc), source maps, type declarations, the lockfile (the versions are in node_modules).
rm -rf "$DEB$LIB/node_modules/.bin" "$DEB$LIB/node_modules/.package-lock.json" "$DEB$LIB/npm-shrinkwrap.json" "$DEB$LIB/README.md"
find "$DEB$LIB" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name .npmignore \) -delete
# The dependencies' own documentation (their license files stay: the copyright file points there).
find "$DEB$LIB/node_modules" -type f \( -iname 'readme*' -o -iname 'changelog*' -o -iname 'history.md' \) -delete
find "$DEB$LIB" -type d -empty -delete
# Only scripts keep an executable bit (some packages ship plain modules as executable).
find "$DEB$LIB" -type f -perm /111 -print0 | while IFS= read -r -d '' file; do
  [[ $(head -c 2 "$file") == '#!' ]] || chmod a-x "$file"
done

# The launcher: the distribution's node, whatever else is on PATH.
mkdir -p "$DEB/usr/bin"
cat >"$DEB/usr/bin/$NAME" <<EOF
#!/bin/sh
# $NAME: runs the CLI in $LIB with the distribution's Node.js.
exec /usr/bin/node $LIB/bin/run.js "\$@"
EOF
chmod 0755 "$DEB/usr/bin/$NAME"

# Man page and bash completion, generated from the commands' help and docs/.
node scripts/package-docs.js "$WORK/docs" >&2
mkdir -p "$DEB/usr/share/man/man1" "$DEB/usr/share/bash-completion/completions"
gzip -9n <"$WORK/docs/$NAME.1" >"$DEB/usr/share/man/man1/$NAME.1.gz"
cp "$WORK/docs/$NAME.bash" "$DEB/usr/share/bash-completion/completions/$NAME"

# Documentation, copyright, changelog.
DOC=$DEB/usr/share/doc/$NAME
mkdir -p "$DOC"
cp README.md "$DOC/"
cp docs/*.md "$DOC/"
DATE_R=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
COMMIT=$(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo unknown)
{
  printf '%s (%s) unstable; urgency=medium\n\n' "$NAME" "$VERSION"
  printf '  * Release %s, built from commit %s with npm run package.\n\n' "$VERSION" "$COMMIT"
  printf ' -- %s  %s\n' "$MAINTAINER" "$DATE_R"
} | gzip -9n >"$DOC/changelog.gz"
node - "$DEB$LIB" "$NAME" "$MAINTAINER" "$(pj 'p.license')" "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)" >"$DOC/copyright" <<'EOF'
// The copyright file: nspawnctl's license, then every bundled npm package with its license
// and the file in the package that holds the license text.
const { readdirSync, readFileSync, existsSync } = require('node:fs');
const { join } = require('node:path');
const [lib, name, maintainer, license, year] = process.argv.slice(2);
const modules = join(lib, 'node_modules');
const packages = [];
const visit = (dir) => {
  for (const entry of readdirSync(dir)) {
    if (entry.startsWith('.')) continue;
    if (entry.startsWith('@')) { visit(join(dir, entry)); continue; }
    const pkgDir = join(dir, entry);
    const pj = join(pkgDir, 'package.json');
    if (!existsSync(pj)) continue;
    const p = JSON.parse(readFileSync(pj, 'utf8'));
    const files = readdirSync(pkgDir).filter((f) => /^(licen[cs]e|copying)/i.test(f));
    packages.push({ where: `/usr/lib/${name}${pkgDir.slice(lib.length)}`, name: p.name, version: p.version, license: typeof p.license === 'string' ? p.license : 'see the package', files });
    if (existsSync(join(pkgDir, 'node_modules'))) visit(join(pkgDir, 'node_modules'));
  }
};
visit(modules);
packages.sort((a, b) => a.where.localeCompare(b.where));
const out = [
  `${name}`,
  '',
  `Copyright: ${year} ${maintainer}`,
  `License: ${license} (as stated in /usr/lib/${name}/package.json).`,
  '',
  `${name} bundles these npm packages in /usr/lib/${name}/node_modules, each under its own`,
  'license; the license text is in the file named after it, in the package\'s directory.',
  '',
  ...packages.map((p) => `  ${p.name} ${p.version}: ${p.license}${p.files.length ? ` (${p.where}/${p.files[0]})` : ' (no license file in the package)'}`),
];
// Licenses whose text Debian ships: point there (the packages' own files may be missing).
const common = { 'Apache-2.0': 'Apache-2.0', 'GPL-2.0': 'GPL-2', 'GPL-3.0': 'GPL-3', 'LGPL-2.1': 'LGPL-2.1', 'LGPL-3.0': 'LGPL-3', 'MPL-2.0': 'MPL-2.0', 'CC0-1.0': 'CC0-1.0', 'BSD-3-Clause': 'BSD' };
const used = [...new Set(packages.map((p) => p.license))].filter((l) => common[l]).sort();
if (used.length) out.push('', ...used.map((l) => `On Debian systems, the full text of the ${l} license is in /usr/share/common-licenses/${common[l]}.`));
console.log(out.join('\n'));
EOF

# Permissions: directories 0755, files 0644 unless executable already.
chmod -R u+rwX,go+rX,go-w "$DEB"
INSTALLED_SIZE=$(du -sk --apparent-size "$DEB" | cut -f1)
mkdir -p "$DEB/DEBIAN"
cat >"$DEB/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: all
Maintainer: $MAINTAINER
Installed-Size: $INSTALLED_SIZE
Depends: nodejs (>= 18.19), systemd-container, mmdebstrap | debootstrap
Recommends: nftables, apt-cacher-ng
Section: admin
Priority: optional
Description: declarative systemd-nspawn machines from one YAML manifest
 nspawnctl turns one YAML file into systemd-nspawn machines on a Debian or
 Ubuntu host: it bootstraps each root file system with mmdebstrap or
 debootstrap, writes the .nspawn settings and the systemd-networkd files of a
 private bridge, and starts the machines with machinectl. Run again, it
 changes only what differs from the manifest.
 .
 "nspawnctl host init" prepares a fresh host (packages, networkd, bridges,
 forwarding); "nspawnctl plan" shows what "nspawnctl apply" would do.
EOF
(cd "$DEB" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$DEB/DEBIAN/md5sums"
chmod 0644 "$DEB/DEBIAN/control" "$DEB/DEBIAN/md5sums"
DEBFILE=${NAME}_${VERSION}_all.deb
dpkg-deb --root-owner-group -Zxz --build "$DEB" "$WORK/$DEBFILE" >/dev/null

mv -f "$WORK/$TGZ" "$OUT/$TGZ"
mv -f "$WORK/$DEBFILE" "$OUT/$DEBFILE"
say "wrote $OUT/$TGZ ($(du -h "$OUT/$TGZ" | cut -f1)) and $OUT/$DEBFILE ($(du -h "$OUT/$DEBFILE" | cut -f1), installed ${INSTALLED_SIZE} KiB)"
