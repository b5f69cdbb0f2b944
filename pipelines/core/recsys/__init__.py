"""Two-stage recommender parts the recommendation cases share: candidate generation, ranking, re-ranking.

``generators`` is the candidate generator interface, ``ranker`` the LightGBM ranker, ``rerank`` the final
list and ``arrays`` the helpers they share; the ANN index is ``pipelines.core.ann``. No module here imports
torch, and none imports LightGBM, Faiss or implicit when imported itself.
"""
