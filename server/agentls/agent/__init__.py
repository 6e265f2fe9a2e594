"""The tool loop, its tools and the staged workspace view."""
