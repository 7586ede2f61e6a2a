"""The web page's templates and static files, shipped inside the package (no CDN, no build)."""
