"""services.xml (the container with its embedders, document API and search; the content cluster) and, for a
self-hosted cluster of several nodes, hosts.xml."""

from __future__ import annotations

from vespa.configuration import services as vt

from common.late import TOKENIZER_MAX
from exporter.manifest import Manifest
from vespa_app.package.options import AppOptions
from vespa_app.serving import (
    COLBERT_DIR,
    COLBERT_EMBEDDER,
    DOCUMENT_EMBEDDER,
    EMBEDDER,
    QUERY_TOWER_DIR,
    SCHEMA,
)


class _Verbatim(str):
    """Element text that pyvespa must not strip: it strips text content, but Vespa concatenates the prefix
    verbatim, so "query: " would silently become "query:"."""

    def strip(self, *args):
        return self


def _embedder(manifest: Manifest, component: str = EMBEDDER, folder: str = "models"):
    settings = [
        vt.transformer_model(path=f"{folder}/model.onnx"),
        vt.tokenizer_model(path=f"{folder}/tokenizer.json"),
        vt.max_tokens(str(manifest.max_tokens)),
        vt.pooling_strategy(manifest.pooling),
        vt.normalize("true" if manifest.normalize else "false"),
    ]
    if manifest.output != "last_hidden_state":
        settings.append(vt.transformer_output(manifest.output))
    if manifest.prefixes["query"] or manifest.prefixes["document"]:
        prefixes = []
        if manifest.prefixes["query"]:
            prefixes.append(vt.query(_Verbatim(manifest.prefixes["query"])))
        if manifest.prefixes["document"]:
            prefixes.append(vt.document(_Verbatim(manifest.prefixes["document"])))
        settings.append(vt.prepend(*prefixes))
    return vt.component(*settings, id=component, type="hugging-face-embedder")


def _colbert_embedder(manifest: Manifest):
    """Vespa's colbert-embedder, told every token id and length the model was trained with (common.late), so
    another Vespa version's defaults cannot change what it embeds."""
    from vespa.configuration.vt import vt as tag

    c = manifest.colbert
    return vt.component(
        vt.transformer_model(path=f"{COLBERT_DIR}/model.onnx"),
        vt.tokenizer_model(path=f"{COLBERT_DIR}/tokenizer.json"),
        vt.transformer_output(manifest.output),
        vt.max_tokens(str(TOKENIZER_MAX)),
        vt.max_query_tokens(str(c["query_tokens"])),
        vt.max_document_tokens(str(c["document_tokens"])),
        vt.transformer_start_sequence_token(str(c["start_token_id"])),
        vt.transformer_end_sequence_token(str(c["end_token_id"])),
        vt.transformer_mask_token(str(c["mask_token_id"])),
        vt.transformer_pad_token(str(c["pad_token_id"])),
        vt.query_token_id(str(c["query_token_id"])),
        vt.document_token_id(str(c["document_token_id"])),
        tag("attend-to-expansion-tokens", "true"),
        id=COLBERT_EMBEDDER,
        type="colbert-embedder",
    )


def services(
    manifest: Manifest | None,
    options: AppOptions,
    colbert: Manifest | None = None,
    query: Manifest | None = None,
):
    """``query``: a two-tower export's query tower, the embedder queries name; ``m`` then embeds documents."""
    single = (
        [_embedder(query, EMBEDDER, QUERY_TOWER_DIR), _embedder(manifest, DOCUMENT_EMBEDDER)]
        if query
        else [_embedder(manifest)]
        if manifest
        else []
    )
    embedders = single + ([_colbert_embedder(colbert)] if colbert else [])
    container_parts = [*embedders, vt.document_api(), vt.search()]
    content_parts = [vt.documents(vt.document(type=SCHEMA, mode="index"))]
    if options.cloud:
        container_parts.append(vt.nodes(vt.resources(vcpu="4", memory="16Gb", disk="125Gb"), count="2"))
        content_parts = [vt.min_redundancy(str(options.redundancy))] + content_parts
        content_parts.append(
            vt.nodes(vt.resources(vcpu="4", memory="16Gb", disk="125Gb"), count=str(options.nodes))
        )
    else:
        content_parts = [vt.redundancy(str(options.redundancy))] + content_parts
        if options.nodes > 1:
            container_parts.append(vt.nodes(vt.node(hostalias="container0")))
            content_parts.append(
                vt.nodes(
                    *[vt.node(hostalias=f"content{i}", distribution_key=str(i)) for i in range(options.nodes)]
                )
            )
    clusters = [
        vt.container(*container_parts, id="default", version="1.0"),
        vt.content(*content_parts, id="content", version="1.0"),
    ]
    if options.nodes > 1 and not options.cloud:
        clusters.insert(
            0,
            vt.admin(
                vt.configservers(vt.configserver(hostalias="admin0")),
                vt.slobroks(vt.slobrok(hostalias="admin0")),
                vt.adminserver(hostalias="admin0"),
                version="2.0",
            ),
        )
    return vt.services(*clusters, version="1.0")


def hosts_xml(options: AppOptions) -> str:
    aliases = ["admin0", "container0"] + [f"content{i}" for i in range(options.nodes)]
    hosts = "\n".join(f'  <host name="{a}.example.com">\n    <alias>{a}</alias>\n  </host>' for a in aliases)
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\n<!-- Replace the host names with your machines. -->\n'
        f"<hosts>\n{hosts}\n</hosts>\n"
    )
