"""medprune.methods"""
