"""The first two demo sections: build the index, ask the plain LlamaIndex engine."""

from __future__ import annotations

from llama_index.core import VectorStoreIndex
from llama_index.core.base.response.schema import Response

from ragprod.demo._core import DemoContext, load_corpus
from ragprod.pii import PIIAnonymizer

__all__ = ["DEMO_QUERIES", "ask", "build_index"]

DEMO_QUERIES = (
    "How long do refunds take?",
    "How do I fail over Redis?",
    "What happens when the LLM provider is down?",
)


def build_index(ctx: DemoContext) -> None:
    """Build a real VectorStoreIndex over the bundled corpus."""
    documents = load_corpus()
    with ctx.timed() as t:
        ctx.index = VectorStoreIndex.from_documents(documents, embed_model=ctx.embed_model)
    nodes = len(ctx.index.docstore.docs)
    ctx.engine = ctx.index.as_query_engine(llm=ctx.llm, similarity_top_k=3)
    ctx.say(f"  {len(documents)} documents -> {nodes} nodes in {t['ms']:.0f} ms")
    ctx.say(f"  embedding: {ctx.embed_model.model_name}, LLM: {ctx.llm.model_name} (offline)")
    ctx.record("documents", len(documents))
    ctx.record("nodes", nodes)
    ctx.record("ms", round(t["ms"], 2))


def ask(ctx: DemoContext) -> None:
    """Run the demo queries through the plain engine, with sources and timings.

    Source titles are shown with PII replaced by its type: some name customers.
    """
    assert ctx.engine is not None
    scrub = PIIAnonymizer(operator="replace").scrub
    answers = []
    for question in DEMO_QUERIES:
        with ctx.timed() as t:
            response = ctx.engine.query(question)
        assert isinstance(response, Response)
        sources = [
            {
                "title": scrub(str(n.node.metadata.get("title", ""))),
                "score": round(float(n.score or 0.0), 3),
            }
            for n in response.source_nodes
        ]
        ctx.say(f"  Q: {question}")
        ctx.say(f"  A: {response}")
        for s in sources:
            ctx.say(f"     source: {s['title']} (score {s['score']:.3f})")
        ctx.say(f"     {t['ms']:.1f} ms")
        answers.append(
            {"query": question, "answer": str(response), "sources": sources, "ms": t["ms"]}
        )
    ctx.record("answers", answers)
