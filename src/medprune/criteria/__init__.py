"""medprune.criteria"""
