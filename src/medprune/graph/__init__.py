"""medprune.graph"""
