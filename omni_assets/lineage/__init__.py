"""The image -> video -> extension graph (graph.py) and its rendering for people (render.py)."""
