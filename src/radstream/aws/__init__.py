"""The AWS backend: the same pipeline on S3, EventBridge, Step Functions, Lambda and Kinesis.

``asl`` renders the pipeline definition as Amazon States Language; ``template`` builds the
CloudFormation stack as plain data.
"""
