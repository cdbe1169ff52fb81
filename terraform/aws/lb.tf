# Application Load Balancer: HTTPS with the caller's ACM certificate, HTTP redirected to
# HTTPS, the tasks as an IP target group checked on /readyz.

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_76:No WAF is attached by default (waf_web_acl_arn is optional); Wharf is not a Java application, so the Log4j rule set would not apply anyway.
  #checkov:skip=CKV2_AWS_28:A WAF is optional (waf_web_acl_arn): registry traffic is authenticated API calls with multi-gigabyte bodies, which WAF body inspection does not cover.
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  idle_timeout               = var.alb_idle_timeout
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  desync_mitigation_mode     = "defensive"

  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == null ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = local.tags
}

resource "aws_lb_target_group" "wharf" {
  name_prefix          = "wharf-"
  port                 = local.container_port
  protocol             = "HTTP"
  protocol_version     = "HTTP1"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 60
  # Round robin: Wharf keeps no per-instance state, no stickiness is needed.
  load_balancing_algorithm_type = "round_robin"

  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.alb_ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.wharf.arn
  }

  tags = local.tags
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:This listener only redirects to HTTPS (permanent 301); no request is served over HTTP.
  #checkov:skip=CKV_AWS_103:The HTTP listener carries no TLS; it only redirects to the HTTPS listener, whose policy is TLS 1.2+.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }

  tags = local.tags
}

resource "aws_wafv2_web_acl_association" "alb" {
  count        = var.waf_web_acl_arn == null ? 0 : 1
  resource_arn = aws_lb.this.arn
  web_acl_arn  = var.waf_web_acl_arn
}

resource "aws_route53_record" "registry" {
  count   = var.route53_zone_id == null ? 0 : 1
  zone_id = var.route53_zone_id
  name    = var.registry_hostname
  type    = "A"

  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
