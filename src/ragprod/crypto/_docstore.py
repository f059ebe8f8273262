"""Document stores with LlamaIndex's async delete fixed (used by ``encrypted_storage_context``).

Upstream ``KVDocumentStore._aremove_from_ref_doc_node`` looks up the ref-doc
info by the *node* id instead of the ref-doc id, so ``adelete_document`` leaves
the deleted node id in ``ref_doc_info`` (llama_index PR #22958), and it reads
the node's metadata concurrently with deleting it. These subclasses do what
the sync path does, in order.
"""

from __future__ import annotations

import asyncio

from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.docstore.simple_docstore import SimpleDocumentStore

__all__ = ["FixedKVDocumentStore", "FixedSimpleDocumentStore"]


class _AsyncDeleteFix(KVDocumentStore):
    async def _aremove_from_ref_doc_node(self, doc_id: str) -> None:
        ref_doc_id = await self._aget_ref_doc_id(doc_id)
        if ref_doc_id is None:
            return
        ref_doc_info = await self.aget_ref_doc_info(ref_doc_id)
        if ref_doc_info is None:
            return
        if doc_id in ref_doc_info.node_ids:
            ref_doc_info.node_ids.remove(doc_id)
        if ref_doc_info.node_ids:
            await self._kvstore.aput(
                ref_doc_id, ref_doc_info.to_dict(), collection=self._ref_doc_collection
            )
        else:
            await asyncio.gather(
                self._kvstore.adelete(ref_doc_id, collection=self._metadata_collection),
                self._kvstore.adelete(ref_doc_id, collection=self._node_collection),
                self._kvstore.adelete(ref_doc_id, collection=self._ref_doc_collection),
            )

    async def adelete_document(self, doc_id: str, raise_error: bool = True) -> None:
        """Delete a node and unlink it from its document's ref_doc_info (as the sync path does)."""
        await self._aremove_from_ref_doc_node(doc_id)
        deleted, _ = await asyncio.gather(
            self._kvstore.adelete(doc_id, collection=self._node_collection),
            self._kvstore.adelete(doc_id, collection=self._metadata_collection),
        )
        if not deleted and raise_error:
            raise ValueError(f"doc_id {doc_id} not found.")


class FixedKVDocumentStore(_AsyncDeleteFix):
    """``KVDocumentStore`` whose ``adelete_document`` keeps ``ref_doc_info`` right."""


class FixedSimpleDocumentStore(_AsyncDeleteFix, SimpleDocumentStore):
    """``SimpleDocumentStore`` whose ``adelete_document`` keeps ``ref_doc_info`` right."""
