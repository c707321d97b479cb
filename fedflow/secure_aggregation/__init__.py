"""Secure aggregation: Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", CCS 2017 (eprint 2017/281).

The coordinator learns the sum of the sites' updates and nothing else about any one of them:
every site adds pairwise masks (expanded from X25519-agreed seeds) that cancel in the sum, plus
a self mask; the seeds are Shamir-shared so that the masks of sites that drop out after masking
can still be removed when at least `threshold` sites answer the unmasking request.
"""
