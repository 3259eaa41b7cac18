# Renders one of the OnDemand app's ERB files the way OnDemand does: ERB with
# trim mode "-", form attributes as methods (and under `context`), and the
# session's connection values (host, port, password) for view.html.erb.
# Usage: ruby ood_render.rb TEMPLATE '{"compute_type": "cpu-small", ...}'
require "erb"
require "json"

class OodContext
  def initialize(values)
    @values = values
  end

  def context
    self
  end

  def method_missing(name, *args)
    @values.key?(name.to_s) ? @values[name.to_s] : super
  end

  def respond_to_missing?(name, include_private = false)
    @values.key?(name.to_s) || super
  end

  def render(text)
    ERB.new(text, trim_mode: "-").result(binding)
  end
end

print OodContext.new(JSON.parse(ARGV[1] || "{}")).render(File.read(ARGV[0]))
