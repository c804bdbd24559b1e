"""Command-line tools: model statistics and deeplab2 checkpoint import."""
