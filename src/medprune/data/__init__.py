"""medprune.data"""
