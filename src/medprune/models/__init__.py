"""medprune.models"""
