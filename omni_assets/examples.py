"""An example code location: an asset of yours whose output becomes video requests.

``product_catalog_prompts`` stands for a user's own asset; ``build_definitions`` adds
``product_catalog_prompts_video_requests``, which registers its output as ``omni_video``
partitions. It is kept out of the default location (:mod:`omni_assets.location`) so that the
catalog there shows only omni_assets' own assets. Load it on its own::

    dagster dev -m omni_assets.examples
"""

from __future__ import annotations

from typing import Any

from dagster import asset

from .definitions import build_definitions

__all__ = ["defs", "product_catalog_prompts"]


@asset(group_name="examples", description="Example upstream asset: prompts from a product catalog.")
def product_catalog_prompts() -> list[dict[str, Any]]:
    """Stands for a user's own asset; its output becomes video requests."""
    products = [("teapot", "a porcelain teapot"), ("sneaker", "a white running sneaker")]
    return [
        {
            "id": f"catalog-{sku}",
            "prompt": f"{text} slowly rotating on a studio turntable",
            "aspect_ratio": "16:9",
        }
        for sku, text in products
    ]


defs = build_definitions(
    upstream_requests=["product_catalog_prompts"], extra_assets=[product_catalog_prompts]
)
