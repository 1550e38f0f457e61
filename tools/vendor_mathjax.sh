#!/usr/bin/env bash
# Vendor MathJax 3 into the book's static files so that the built HTML renders math without network.
#
#   tools/vendor_mathjax.sh DEST      e.g. tools/vendor_mathjax.sh _build/src/_vendor/mathjax
#
# MathJax comes from npm (the only network the build needs for it), installed ONCE into a cache folder that git
# ignores (MATHJAX_CACHE, default .vendor/mathjax at the repository root); later runs copy from the cache and never
# touch the network. DEST receives es5/tex-chtml.js plus the files it loads lazily (CHTML woff-v2 fonts, TeX
# extensions loaded by \require/autoload, the menu and accessibility components), with the same relative layout,
# so `mathjax_path: mathjax/tex-chtml.js` (relative to _static, where Sphinx copies html_static_path) finds
# them. Idempotent.
set -euo pipefail

VERSION="${MATHJAX_VERSION:-3.2.2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MATHJAX_CACHE:-$ROOT/.vendor/mathjax}"
DEST="${1:?usage: tools/vendor_mathjax.sh DEST (e.g. _build/src/_vendor/mathjax)}"
PKG="$CACHE/node_modules/mathjax"

installed_version() {
    [ -f "$PKG/package.json" ] && [ -f "$PKG/es5/tex-chtml.js" ] || return 0
    sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$PKG/package.json" | head -n 1
}

if [ "$(installed_version)" != "$VERSION" ]; then
    if ! command -v npm > /dev/null; then
        echo "vendor_mathjax: npm is not installed; install Node.js/npm (Debian: apt-get install -y npm) or put" \
             "mathjax@$VERSION under $PKG" >&2
        exit 1
    fi
    mkdir -p "$CACHE"
    echo "vendor_mathjax: npm install mathjax@$VERSION into $CACHE" >&2
    if ! npm install --prefix "$CACHE" --no-audit --no-fund --no-save --loglevel=error "mathjax@$VERSION" > /dev/null; then
        echo "vendor_mathjax: npm install mathjax@$VERSION failed (no access to the npm registry?)" >&2
        exit 1
    fi
    if [ "$(installed_version)" != "$VERSION" ]; then
        echo "vendor_mathjax: $PKG does not hold mathjax $VERSION after npm install" >&2
        exit 1
    fi
fi

ES5="$PKG/es5"
rm -rf "$DEST"
mkdir -p "$DEST/output/chtml/fonts" "$DEST/input/tex"
cp "$ES5/tex-chtml.js" "$DEST/"
cp -r "$ES5/output/chtml/fonts/woff-v2" "$DEST/output/chtml/fonts/"
cp -r "$ES5/input/tex/extensions" "$DEST/input/tex/"
for d in ui a11y sre; do
    cp -r "$ES5/$d" "$DEST/"
done
cp "$PKG/LICENSE" "$DEST/LICENSE"
echo "$VERSION" > "$DEST/VERSION"
echo "vendor_mathjax: MathJax $VERSION -> $DEST ($(du -sh "$DEST" | cut -f1))" >&2
