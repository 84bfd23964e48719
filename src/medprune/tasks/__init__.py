"""medprune.tasks"""
